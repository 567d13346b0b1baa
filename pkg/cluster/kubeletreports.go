package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// waitKubeletReports waits until the node's kubelet renews its node Lease after since and its
// Node is Ready. It watches the two objects (each selected by name) instead of polling them: a
// wave of many workers costs the API two watches per node, not four requests a second.
func waitKubeletReports(ctx context.Context, cs kubernetes.Interface, node string, since time.Time, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The watches reconnect by themselves (an apiserver restarting): client-go's log of that
	// is not the operator's business; the outcome is in the error.
	wctx = klog.NewContext(wctx, logr.Discard())
	var listErr atomic.Pointer[error]
	leases := cs.CoordinationV1().Leases("kube-node-lease")
	err := untilNamed(wctx, cs, node, &listErr, &coordinationv1.Lease{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return leases.List(ctx, o) },
		leases.Watch,
		func(obj runtime.Object) bool {
			l, ok := obj.(*coordinationv1.Lease)
			return ok && l.Spec.RenewTime != nil && l.Spec.RenewTime.Time.After(since.Add(-time.Second))
		})
	if err != nil {
		return fmt.Errorf("kubelet of %s not reporting within %s: %s", node, timeout, why(&listErr, "its kubelet has not renewed its node Lease since the restart"))
	}
	nodes := cs.CoreV1().Nodes()
	err = untilNamed(wctx, cs, node, &listErr, &corev1.Node{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodes.List(ctx, o) },
		nodes.Watch,
		func(obj runtime.Object) bool {
			n, ok := obj.(*corev1.Node)
			return ok && isReady(n)
		})
	if err != nil {
		return fmt.Errorf("kubelet of %s not reporting within %s: %s", node, timeout, why(&listErr, "the Node is not Ready"))
	}
	return nil
}

// why is the last refused list, or what was awaited.
func why(listErr *atomic.Pointer[error], awaited string) string {
	if err := listErr.Load(); err != nil {
		return (*err).Error()
	}
	return awaited
}

// untilNamed lists and watches the objects named name (a field selector) until ok is true of
// one, or ctx ends; a refused list is kept in listErr (the reflector retries it).
func untilNamed(ctx context.Context, cs kubernetes.Interface, name string, listErr *atomic.Pointer[error], example runtime.Object,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	ok func(runtime.Object) bool,
) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	named := func(obj any) bool {
		o, isObj := obj.(runtime.Object)
		if !isObj {
			return false
		}
		m, err := apimeta.Accessor(o)
		return err == nil && m.GetName() == name && ok(o)
	}
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			l, err := list(ctx, o)
			if err != nil {
				listErr.Store(&err)
			} else {
				listErr.Store(nil)
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return watchFn(ctx, o)
		},
	}, cs)
	_, err := watchtools.UntilWithSync(ctx, lw, example,
		func(store cache.Store) (bool, error) {
			for _, obj := range store.List() {
				if named(obj) {
					return true, nil
				}
			}
			return false, nil
		},
		func(ev watch.Event) (bool, error) {
			return (ev.Type == watch.Added || ev.Type == watch.Modified) && named(ev.Object), nil
		})
	return err
}
