package carotate

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/certctl/certctl/pkg/pki"
)

// Expand resolves the CA argument: one of CAs, or "all" (every CA, in order). Empty means all.
func Expand(arg string) ([]string, error) {
	if arg == "" || arg == "all" {
		return slices.Clone(CAs), nil
	}
	if _, err := lookup(arg); err != nil {
		return nil, err
	}
	return []string{arg}, nil
}

// ExpandAll resolves several CA arguments (each one of CAs, or "all") into CAs in the order
// "all" takes them, each once. None means all.
func ExpandAll(args []string) ([]string, error) {
	if len(args) == 0 {
		return slices.Clone(CAs), nil
	}
	want := map[string]bool{}
	for _, a := range args {
		cas, err := Expand(a)
		if err != nil {
			return nil, err
		}
		for _, c := range cas {
			want[c] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(CAs), func(c string) bool { return !want[c] }), nil
}

// Current is the CA certificate this node signs with for ca (pki/ca.crt, pki/etcd/ca.crt,
// pki/front-proxy-ca.crt), and its path; fs.ErrNotExist (wrapped) when the CA is not on the
// node.
func Current(l pki.Layout, ca string) (*x509.Certificate, string, error) {
	p, err := PathsOf(l, ca)
	if err != nil {
		return nil, "", err
	}
	name, data, err := caCert(p)
	if err != nil {
		return nil, p.CACert, err
	}
	c, err := parseCA(name, data, "", nil)
	if err != nil {
		return nil, p.CACert, err
	}
	return c.cert, p.CACert, nil
}

// caCert reads the CA certificate the node holds for p's CA: ca.crt, or, on a worker where
// phase trust wrote the rotation's bundle (old + new) into ca.crt in place, the old CA that
// phase kept in old.crt; name is the file read.
func caCert(p Paths) (name string, data []byte, err error) {
	data, err = os.ReadFile(p.CACert)
	if err != nil {
		return p.CACert, nil, fmt.Errorf("read %s: %w", p.CACert, err)
	}
	if bundle, err := os.ReadFile(p.Bundle); err == nil && bytes.Equal(data, bundle) {
		if data, err = os.ReadFile(p.OldCert); err != nil {
			return p.OldCert, nil, fmt.Errorf("%s holds the rotation's bundle: read the old CA: %w", p.CACert, err)
		}
		return p.OldCert, data, nil
	}
	return p.CACert, data, nil
}

// Run runs phase (trust, issue, drop), or with rollback the rollback of the last phase, for
// each CA of cas on this node, stopping at the first error; it returns the results so far.
// With more than one CA, a CA that is not on this node (no etcd CA on a worker, with
// external etcd) is skipped, and rollback goes in reverse order over the CAs that have a
// rotation. o.CA is ignored; o.NewCA needs exactly one CA; o.NewCAs gives each CA its own.
func Run(o Options, cas []string, phase string, rollback bool) ([]*Result, error) {
	if !rollback && phaseIndex(phase) < 0 {
		return nil, fmt.Errorf("--phase %q: want one of %v (or --rollback)", phase, Phases)
	}
	if rollback && phase != "" {
		if phaseIndex(phase) < 0 {
			return nil, fmt.Errorf("--rollback --phase %q: want one of %v", phase, Phases)
		}
		o.RollbackPhase = phase
	}
	if o.NewCA != nil && len(cas) != 1 {
		return nil, errors.New("--new-ca-cert names one CA's files: give the CA (ca, etcd-ca or front-proxy-ca), not all")
	}
	if o.NewCA != nil && len(o.NewCAs) > 0 {
		return nil, errors.New("give the new CA once: as one CA's files or as a directory of them")
	}
	order := slices.Clone(cas)
	if rollback {
		slices.Reverse(order)
	}
	var out []*Result
	for _, ca := range order {
		o.CA = ca
		if len(o.NewCAs) > 0 {
			o.NewCA = o.NewCAs[ca]
		}
		if len(cas) > 1 {
			if skip := skipped(o, rollback); skip != nil {
				out = append(out, skip)
				continue
			}
		}
		var (
			r   *Result
			err error
		)
		switch {
		case rollback:
			r, err = Rollback(o)
		case phase == PhaseTrust:
			r, err = Trust(o)
		case phase == PhaseIssue:
			r, err = Issue(o)
		default:
			r, err = Drop(o)
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// skipped returns a Result for a CA an "all" run leaves out on this node, or nil.
func skipped(o Options, rollback bool) *Result {
	p, err := PathsOf(o.Layout, o.CA)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(p.CACert); err != nil {
		return &Result{CA: o.CA, Skipped: true, Notes: []string{fmt.Sprintf("not on this node (no %s)", p.CACert)}}
	}
	if st, err := LoadState(o.Layout, o.CA); rollback && err == nil && st == nil {
		return &Result{CA: o.CA, Skipped: true, Notes: []string{"no rotation to roll back"}}
	}
	return nil
}

// Render writes results for a person: per CA what changed (or would), the backup, the notes,
// and the components to restart.
func Render(w io.Writer, results []*Result) {
	var restart []string
	for _, r := range results {
		head := r.CA + ": "
		switch {
		case r.Skipped:
			fmt.Fprintf(w, "%sskipped: %s\n", head, strings.Join(r.Notes, "; "))
			continue
		case r.AlreadyDone:
			fmt.Fprintf(w, "%s%s\n", head, strings.Join(r.Notes, "; "))
			continue
		case r.DryRun:
			fmt.Fprintf(w, "%sphase %s would change (dry run, nothing changed):\n", head, r.Phase)
		default:
			fmt.Fprintf(w, "%sphase %s changed:\n", head, r.Phase)
		}
		for _, c := range r.Changes {
			fmt.Fprintf(w, "  %s: %s\n", c.Path, c.What)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if r.BackupID != "" && !r.DryRun {
			fmt.Fprintf(w, "  backup: %s\n", r.BackupID)
		}
		for _, c := range r.Restart {
			if !slices.Contains(restart, c) {
				restart = append(restart, c)
			}
		}
	}
	if len(restart) > 0 {
		slices.Sort(restart)
		fmt.Fprintf(w, "restart to use the new files: certctl restart %s\n", strings.Join(restart, " "))
	}
}
