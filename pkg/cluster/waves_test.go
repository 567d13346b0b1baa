package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/apiretry"
)

func TestParseMaxParallel(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    MaxParallel
		wantErr bool
	}{
		{in: "", want: MaxParallel{}},
		{in: "4", want: MaxParallel{N: 4}},
		{in: " 10% ", want: MaxParallel{N: 10, Percent: true}},
		{in: "100%", want: MaxParallel{N: 100, Percent: true}},
		{in: "0", wantErr: true},
		{in: "0%", wantErr: true},
		{in: "-2", wantErr: true},
		{in: "101%", wantErr: true},
		{in: "4x", wantErr: true},
		{in: "%", wantErr: true},
		{in: "1.5", wantErr: true},
	} {
		got, err := ParseMaxParallel(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseMaxParallel(%q) = %+v, %v; want %+v, error %v", c.in, got, err, c.want, c.wantErr)
		}
		if err == nil && c.in != "" {
			if again, err := ParseMaxParallel(got.String()); err != nil || again != got {
				t.Errorf("ParseMaxParallel(%q.String() = %q) = %+v, %v", c.in, got.String(), again, err)
			}
		}
	}
}

func TestMaxParallelOf(t *testing.T) {
	for _, c := range []struct {
		m       MaxParallel
		workers int
		want    int
	}{
		{MaxParallel{}, 0, 1}, // the default: 25%, at least 4
		{MaxParallel{}, 1, 1},
		{MaxParallel{}, 3, 3},
		{MaxParallel{}, 8, 4},
		{MaxParallel{}, 20, 5},
		{MaxParallel{}, 500, 125},
		{MaxParallel{}, 5000, 250},                      // at most 250
		{MaxParallel{N: 30, Percent: true}, 5000, 1500}, // given: no maximum
		{MaxParallel{N: 25, Percent: true}, 8, 2},       // 25% given: no minimum
		{MaxParallel{N: 10, Percent: true}, 5, 1},       // rounded down, at least 1
		{MaxParallel{N: 10, Percent: true}, 1000, 100},
		{MaxParallel{N: 100, Percent: true}, 7, 7},
		{MaxParallel{N: 3}, 8, 3},
		{MaxParallel{N: 50}, 8, 50}, // a wave never exceeds the workers there are (waves)
	} {
		if got := c.m.Of(c.workers); got != c.want {
			t.Errorf("%v.Of(%d) = %d, want %d", c.m, c.workers, got, c.want)
		}
	}
}

func TestWaves(t *testing.T) {
	const C, W = true, false
	for _, c := range []struct {
		name string
		cp   []bool
		size int
		want [][]int
	}{
		{"control plane then workers", []bool{C, C, C, W, W, W, W, W}, 2, [][]int{{0}, {1}, {2}, {3, 4}, {5, 6}, {7}}},
		{"one at a time", []bool{C, W, W}, 1, [][]int{{0}, {1}, {2}}},
		{"all workers at once", []bool{C, W, W, W}, 10, [][]int{{0}, {1, 2, 3}}},
		{"rollback: workers first", []bool{W, W, W, C, C}, 2, [][]int{{0, 1}, {2}, {3}, {4}}},
		{"control-plane nodes only", []bool{C, C}, 4, [][]int{{0}, {1}}},
		{"a control-plane node between workers splits their waves", []bool{W, C, W}, 4, [][]int{{0}, {1}, {2}}},
		{"no nodes", nil, 2, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := waves(c.cp, c.size)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("waves(%v, %d) = %v, want %v", c.cp, c.size, got, c.want)
			}
		})
	}
}

// TestWaveRun runs nodes that each wait, with a deadline, for every other node of their wave
// to have started: a wave whose nodes did not run at once fails on that deadline. It checks
// the order of the waves, that a wave with failures ends the run after all its nodes ended,
// naming each failed node, and that the Lease check stops a run before a wave.
func TestWaveRun(t *testing.T) {
	names := []string{"cp1", "cp2", "w1", "w2", "w3", "w4", "w5"}
	ws := waves([]bool{true, true, false, false, false, false, false}, 2) // {cp1} {cp2} {w1 w2} {w3 w4} {w5}
	errBroken := errors.New("kubelet not reporting")
	gaveUp := &apiretry.GaveUpError{Host: "10.2.1.139:6443", Waited: 2 * time.Minute, Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		name       string
		fail       map[string]bool
		apiLost    map[string]bool // nodes whose wait ends with the API given up on
		leaseLost  int             // the wave before which the Lease is lost (0: never)
		wantRan    []string
		wantFailed []string
		wantLost   []string
		wantErr    bool
	}{
		{name: "every node", wantRan: names},
		{name: "one worker of a wave fails", fail: map[string]bool{"w3": true},
			wantRan: []string{"cp1", "cp2", "w1", "w2", "w3", "w4"}, wantFailed: []string{"w3"}, wantErr: true},
		{name: "both workers of a wave fail", fail: map[string]bool{"w1": true, "w2": true},
			wantRan: []string{"cp1", "cp2", "w1", "w2"}, wantFailed: []string{"w1", "w2"}, wantErr: true},
		{name: "a control-plane node fails", fail: map[string]bool{"cp1": true},
			wantRan: []string{"cp1"}, wantFailed: []string{"cp1"}, wantErr: true},
		{name: "the API lost for a worker: not its failure", apiLost: map[string]bool{"w2": true},
			wantRan: []string{"cp1", "cp2", "w1", "w2"}, wantLost: []string{"w2"}, wantErr: true},
		{name: "the API lost for one worker, the other failed", apiLost: map[string]bool{"w4": true}, fail: map[string]bool{"w3": true},
			wantRan: []string{"cp1", "cp2", "w1", "w2", "w3", "w4"}, wantFailed: []string{"w3"}, wantLost: []string{"w4"}, wantErr: true},
		{name: "lease lost before the third wave", leaseLost: 3,
			wantRan: []string{"cp1", "cp2"}, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var ran []string
			started := map[int]chan struct{}{}
			for i := range names {
				started[i] = make(chan struct{})
			}
			waveOf := map[int][]int{}
			for _, w := range ws {
				for _, i := range w {
					waveOf[i] = w
				}
			}
			wave := 0
			run := waveRun{
				before: func(ctx context.Context) error {
					wave++
					if wave == c.leaseLost {
						return errors.New("lease lost")
					}
					return nil
				},
				node: func(ctx context.Context, i int) error {
					close(started[i])
					for _, j := range waveOf[i] {
						select {
						case <-started[j]:
						case <-time.After(10 * time.Second):
							return fmt.Errorf("%s started, %s of the same wave not within 10 s", names[i], names[j])
						}
					}
					mu.Lock()
					ran = append(ran, names[i])
					mu.Unlock()
					if c.fail[names[i]] {
						return errBroken
					}
					if c.apiLost[names[i]] {
						return fmt.Errorf("node %s: %w", names[i], gaveUp)
					}
					return nil
				},
				name: func(i int) string { return names[i] },
			}
			err := run.run(context.Background(), ws)
			if (err != nil) != c.wantErr {
				t.Fatalf("run: %v, want error %v", err, c.wantErr)
			}
			slices.Sort(ran)
			want := slices.Sorted(slices.Values(c.wantRan))
			if !slices.Equal(ran, want) {
				t.Errorf("ran %v, want %v", ran, want)
			}
			var we *WaveError
			if errors.As(err, &we) != (c.wantFailed != nil) {
				t.Fatalf("error %v: a WaveError %v, want one naming %v", err, errors.As(err, &we), c.wantFailed)
			}
			if c.wantFailed != nil {
				if !slices.Equal(we.Nodes(), c.wantFailed) {
					t.Errorf("failed nodes %v, want %v", we.Nodes(), c.wantFailed)
				}
				if !errors.Is(err, errBroken) {
					t.Errorf("%v does not wrap the node's error", err)
				}
			}
			var lost *APILostError
			if errors.As(err, &lost) != (c.wantLost != nil) {
				t.Fatalf("error %v: an APILostError %v, want one naming %v", err, errors.As(err, &lost), c.wantLost)
			}
			if c.wantLost != nil {
				if !slices.Equal(lost.Nodes, c.wantLost) || lost.Err != gaveUp {
					t.Errorf("the API lost at %v (%v), want %v (%v)", lost.Nodes, lost.Err, c.wantLost, gaveUp)
				}
				if we != nil && slices.ContainsFunc(we.Nodes(), func(n string) bool { return slices.Contains(c.wantLost, n) }) {
					t.Errorf("a node the API was lost for is reported failed: %v", we.Nodes())
				}
			}
		})
	}
}
