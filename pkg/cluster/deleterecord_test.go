package cluster

import (
	"context"
	"errors"
	"io"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/certctl/certctl/pkg/lease"
)

// TestDeleteRecord: the final delete of a run's record is sent again when its connection broke
// (an apiserver restarting under the command: CI saw "unexpected EOF"), a record already gone
// is done, and an answer of the API ends it at once. (A unit test of the branches on a fake
// clientset; the lab's TestFaultAPIRestartsUnderOrchestrator restarts a real apiserver under it.)
func TestDeleteRecord(t *testing.T) {
	cut := &url.Error{Op: "Delete", URL: "https://10.2.1.151:6443/api/v1/namespaces/kube-system/configmaps/x", Err: io.ErrUnexpectedEOF}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "x", errors.New("no"))
	for _, tc := range []struct {
		name      string
		errs      []error // what the first deletes return; then the fake's own answer
		exists    bool
		wantErr   error
		wantCalls int
	}{
		{name: "deleted", exists: true, wantCalls: 1},
		{name: "gone already", exists: false, wantCalls: 1},
		{name: "answer cut twice, then deleted", errs: []error{cut, cut}, exists: true, wantCalls: 3},
		{name: "forbidden: at once", errs: []error{forbidden}, exists: true, wantErr: forbidden, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.exists {
				objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lease.Namespace, Name: "x"}})
			}
			cs := fake.NewClientset(objs...)
			calls := 0
			cs.PrependReactor("delete", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls++
				if calls <= len(tc.errs) {
					return true, nil, tc.errs[calls-1]
				}
				return false, nil, nil
			})
			err := deleteRecord(context.Background(), cs, "x", 30*time.Second)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("deleteRecord: %v, want %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Errorf("%d deletes sent, want %d", calls, tc.wantCalls)
			}
			if _, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(context.Background(), "x", metav1.GetOptions{}); tc.wantErr == nil && !apierrors.IsNotFound(err) {
				t.Errorf("the record is still there: %v", err)
			}
		})
	}
}
