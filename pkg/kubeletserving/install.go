package kubeletserving

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
)

// ApproverInstalled reports whether the approver's Deployment exists in namespace.
func ApproverInstalled(ctx context.Context, cs kubernetes.Interface, namespace, name string) (bool, error) {
	_, err := cs.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("get Deployment %s/%s: %w", namespace, name, err)
}

// Apply creates (or updates) every object of a manifest Manifest rendered. With dryRun the
// apiserver validates and admits each object without storing it (server-side dry run). It
// returns "Kind namespace/name" of each object.
func Apply(ctx context.Context, cs kubernetes.Interface, manifest []byte, dryRun bool) ([]string, error) {
	var opts []string
	if dryRun {
		opts = []string{metav1.DryRunAll}
	}
	co, uo := metav1.CreateOptions{DryRun: opts, FieldManager: "certctl"}, metav1.UpdateOptions{DryRun: opts, FieldManager: "certctl"}
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var done []string
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return done, nil
		}
		if err != nil {
			return done, fmt.Errorf("read manifest: %w", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return done, fmt.Errorf("decode manifest: %w", err)
		}
		var name string
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			name, err = "ServiceAccount "+o.Namespace+"/"+o.Name, apply(ctx, cs.CoreV1().ServiceAccounts(o.Namespace), o, co, uo)
		case *rbacv1.ClusterRole:
			name, err = "ClusterRole "+o.Name, apply(ctx, cs.RbacV1().ClusterRoles(), o, co, uo)
		case *rbacv1.ClusterRoleBinding:
			name, err = "ClusterRoleBinding "+o.Name, apply(ctx, cs.RbacV1().ClusterRoleBindings(), o, co, uo)
		case *rbacv1.Role:
			name, err = "Role "+o.Namespace+"/"+o.Name, apply(ctx, cs.RbacV1().Roles(o.Namespace), o, co, uo)
		case *rbacv1.RoleBinding:
			name, err = "RoleBinding "+o.Namespace+"/"+o.Name, apply(ctx, cs.RbacV1().RoleBindings(o.Namespace), o, co, uo)
		case *appsv1.Deployment:
			name, err = "Deployment "+o.Namespace+"/"+o.Name, apply(ctx, cs.AppsV1().Deployments(o.Namespace), o, co, uo)
		default:
			return done, fmt.Errorf("manifest: unexpected object %T", obj)
		}
		if err != nil {
			return done, fmt.Errorf("apply %s: %w", name, err)
		}
		done = append(done, name)
	}
}

// typedClient is the part of a client-go typed client Apply uses.
type typedClient[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// apply creates obj, or replaces the existing one.
func apply[T metav1.Object](ctx context.Context, c typedClient[T], obj T, co metav1.CreateOptions, uo metav1.UpdateOptions) error {
	_, err := c.Create(ctx, obj, co)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	_, err = c.Update(ctx, obj, uo)
	return err
}
