package renew

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// ApplyOptions are how to write.
type ApplyOptions struct {
	Writer      fsutil.Writer // nil: the real file system
	Command     string        // recorded in the backup manifest and the journal
	LockTimeout time.Duration // how long to wait for another certctl run
	Log         io.Writer     // progress and recovery notes; nil discards
	CSRDir      string        // --csr-only output directory
	// Locked: the caller holds the node lock (txn.AcquireLock) and has run
	// txn.RecoverLocked, as a CA rotation does around its renewal; Apply then takes neither.
	Locked bool
	// AlsoBackUp are more files to put into the renewal's backup (the user's kubeconfig that
	// the caller refreshes after the renewal), so that one restore undoes both.
	AlsoBackUp []string
}

// Changed is one renewed item.
type Changed struct {
	Name       string
	Kind       pki.Kind
	Files      []string // the files replaced (or, for --csr-only, written)
	Components []string // what reads them and must restart to use them (Spec.Components)
}

// Result is what Apply did.
type Result struct {
	BackupID string    // empty when nothing changed or for --csr-only
	CSRDir   string    // --csr-only: where the keys and requests are
	Changed  []Changed // in plan order
	// KubeadmConfig is what happened to kube-system/kubeadm-config, or nil.
	KubeadmConfig *KubeadmConfigResult
}

// Components is the union of the changed items' components, sorted: what `renew --restart`
// must restart.
func (r *Result) Components() []string {
	var out []string
	for _, c := range r.Changed {
		for _, comp := range c.Components {
			if !slices.Contains(out, comp) {
				out = append(out, comp)
			}
		}
	}
	sort.Strings(out)
	return out
}

// material is the new content of one item, built in memory before anything is written.
type material struct {
	files []newFile // in rename order: key before certificate
}

type newFile struct {
	path string
	data []byte
	mode os.FileMode
}

// Apply performs the plan. With nothing to renew it returns an empty Result and writes
// nothing (no lock, no backup). Otherwise, under the lock: it finishes any interrupted
// renewal, checks the files are still what the plan read, builds every key and certificate
// in memory (keys generated in parallel), backs up the files, then writes them crash-safely
// (see pkg/txn). On any error before the first rename the tree is exactly as it was.
func Apply(p *Plan, o ApplyOptions) (*Result, error) {
	res := &Result{}
	if p.Empty() {
		return res, nil
	}
	w := o.Writer
	if w == nil {
		w = fsutil.OS{}
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	if p.Options.CSROnly {
		return applyCSR(p, w, o, res)
	}
	if !o.Locked {
		lock, err := AcquireLock(p.Layout.StateDir(), o.LockTimeout)
		if err != nil {
			return nil, err
		}
		defer lock.Release()
		if err := txn.RecoverLocked(fsutil.OS{}, p.Layout, log); err != nil {
			return nil, err
		}
	}
	for _, wk := range p.work {
		for f, sum := range wk.sums {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			if backup.Sum(data) != sum {
				return nil, fmt.Errorf("%s changed since the plan was made (another renewal?); run certctl renew again", f)
			}
		}
	}
	// The journal (phase prepare) names every staged file before the first is written, so
	// a crash from here on is rolled back by removing them.
	j := &txn.Journal{Started: p.Options.Now.UTC(), Command: o.Command, Phase: txn.PhasePrepare}
	var targets []string
	for _, wk := range p.work {
		j.Items = append(j.Items, p.Rows[wk.idx].Name)
		for _, f := range wk.files(p) {
			targets = append(targets, f)
			j.Files = append(j.Files, txn.File{Path: f, Staged: txn.StagedName(f)})
		}
	}
	var bk *backup.Manifest // set once the backup exists; undo removes it
	undo := func(cause error) error {
		for _, f := range j.Files {
			w.Remove(f.Staged)
		}
		txn.RemoveTemps(j, p.Layout)
		w.Remove(txn.JournalPath(p.Layout))
		if bk != nil {
			os.RemoveAll(backup.Dir(p.Layout, bk.ID))
		}
		return fmt.Errorf("%w; nothing was changed", cause)
	}
	if err := txn.WriteJournal(w, p.Layout, j); err != nil {
		return nil, undo(err)
	}
	// Keys and certificates are built in parallel (key generation is the costly part) while
	// this goroutine backs up the old files and stages each new item as soon as it is ready.
	results := make(chan built, len(p.work))
	for i, wk := range p.work {
		go func() {
			m, err := buildOne(p, wk)
			results <- built{i: i, m: m, err: err}
		}()
	}
	var err error
	bk, err = backup.Create(w, p.Layout, o.Command, append(slices.Clone(targets), o.AlsoBackUp...), p.Options.Now)
	if err != nil {
		bk = nil
		for range p.work {
			<-results
		}
		return nil, undo(err)
	}
	res.BackupID = bk.ID
	j.BackupID = bk.ID
	mats := make([]material, len(p.work))
	var errs []error
	for range p.work {
		b := <-results
		if b.err != nil {
			errs = append(errs, b.err)
			continue
		}
		if len(errs) > 0 {
			continue
		}
		mats[b.i] = b.m
		for _, f := range b.m.files {
			if err := w.WriteNew(txn.StagedName(f.path), f.data, f.mode); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	if len(errs) > 0 {
		return nil, undo(errors.Join(errs...))
	}
	sums := map[string]string{}
	for _, m := range mats {
		for _, f := range m.files {
			sums[f.path] = backup.Sum(f.data)
		}
	}
	for i := range j.Files {
		j.Files[i].SHA256 = sums[j.Files[i].Path]
	}
	for _, d := range txn.DirsOf(targets) {
		if err := w.SyncDir(d); err != nil {
			return nil, undo(err)
		}
	}
	j.Phase = txn.PhaseCommit
	if err := txn.WriteJournal(w, p.Layout, j); err != nil {
		return nil, undo(err)
	}
	// From here a crash is repaired by rolling forward: every staged file is complete and
	// durable, and the journal says so.
	for _, f := range j.Files {
		if err := w.Rename(f.Staged, f.Path); err != nil {
			if _, rerr := backup.RestoreUnjournaled(w, p.Layout, bk.ID); rerr != nil {
				return nil, fmt.Errorf("%w; restoring backup %s also failed (%v): the journal %s stays, and the next certctl run completes the renewal", err, bk.ID, rerr, txn.JournalPath(p.Layout))
			}
			for _, f := range j.Files {
				w.Remove(f.Staged)
			}
			w.Remove(txn.JournalPath(p.Layout))
			// The tree is back to what the backup holds: the backup is not needed.
			os.RemoveAll(backup.Dir(p.Layout, bk.ID))
			return nil, fmt.Errorf("%w; the old files were restored, nothing was changed", err)
		}
	}
	for _, d := range txn.DirsOf(targets) {
		if err := w.SyncDir(d); err != nil {
			return nil, fmt.Errorf("%w (the journal %s stays; the next certctl run checks the renewal)", err, txn.JournalPath(p.Layout))
		}
	}
	if err := w.Remove(txn.JournalPath(p.Layout)); err != nil {
		return nil, err
	}
	for i, m := range mats {
		wk := p.work[i]
		c := Changed{Name: p.Rows[wk.idx].Name, Kind: wk.spec.Kind, Components: slices.Clone(wk.spec.Components)}
		for _, f := range m.files {
			c.Files = append(c.Files, f.path)
		}
		res.Changed = append(res.Changed, c)
	}
	// After the files: the ConfigMap is what kubeadm reads next time; a failure there is
	// reported (with the command to run later) and does not undo the renewal.
	res.KubeadmConfig = p.KubeadmConfig.apply()
	return res, nil
}

type built struct {
	i   int
	m   material
	err error
}

// files lists what renewing wk replaces, in rename order (key before certificate).
func (wk *work) files(p *Plan) []string {
	row := p.Rows[wk.idx]
	if wk.kubecfg != nil || wk.reuse {
		return []string{row.Path}
	}
	return []string{row.KeyPath, row.Path}
}

func newKey(wk *work) (crypto.Signer, error) {
	if wk.reuse {
		return wk.oldKey, nil
	}
	return pki.GenerateKey(wk.alg)
}

func buildOne(p *Plan, wk *work) (material, error) {
	row := p.Rows[wk.idx]
	key, err := newKey(wk)
	if err != nil {
		return material{}, fmt.Errorf("%s: generate key: %w", row.Name, err)
	}
	cert, err := pki.Sign(wk.ca, wk.caKey, key, wk.tmpl)
	if err != nil {
		return material{}, fmt.Errorf("%s: %w", row.Name, err)
	}
	certPEM := pki.EncodeCertificates(cert)
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return material{}, fmt.Errorf("%s: %w", row.Name, err)
	}
	if wk.kubecfg != nil {
		cfg, err := kubeconfig.SetClientCertificate(wk.kubecfg, certPEM, keyPEM, wk.caPEM)
		if err != nil {
			return material{}, fmt.Errorf("%s: %s: %w", row.Name, row.Path, err)
		}
		data, err := kubeconfig.Marshal(cfg)
		if err != nil {
			return material{}, fmt.Errorf("%s: %w", row.Name, err)
		}
		return material{files: []newFile{{path: row.Path, data: data, mode: 0o600}}}, nil
	}
	var m material
	if !wk.reuse {
		m.files = append(m.files, newFile{path: row.KeyPath, data: keyPEM, mode: 0o600})
	}
	m.files = append(m.files, newFile{path: row.Path, data: pki.EncodeCertificates(append([]*x509.Certificate{cert}, wk.chain...)...), mode: wk.certMode})
	return m, nil
}

// applyCSR writes a key and a certificate request per item into o.CSRDir; the tree itself
// is not changed.
func applyCSR(p *Plan, w fsutil.Writer, o ApplyOptions, res *Result) (*Result, error) {
	if o.CSRDir == "" {
		return nil, errors.New("--csr-only needs an output directory")
	}
	type out struct{ csr, key []byte }
	outs := make([]out, len(p.work))
	errs := make([]error, len(p.work))
	var wg sync.WaitGroup
	for i, wk := range p.work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := p.Rows[wk.idx].Name
			key, err := newKey(wk)
			if err != nil {
				errs[i] = fmt.Errorf("%s: generate key: %w", name, err)
				return
			}
			csr, err := pki.CreateCSR(key, wk.tmpl)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			keyPEM, err := pki.EncodePrivateKey(key)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			outs[i] = out{csr: csr, key: keyPEM}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, wk := range p.work {
		name := p.Rows[wk.idx].Name
		for _, ext := range []string{".csr", ".key"} {
			if _, err := os.Stat(filepath.Join(o.CSRDir, name+ext)); err == nil {
				return nil, fmt.Errorf("%s already exists; choose an empty --csr-dir", filepath.Join(o.CSRDir, name+ext))
			}
		}
	}
	if err := w.MkdirAll(o.CSRDir, 0o700); err != nil {
		return nil, err
	}
	res.CSRDir = o.CSRDir
	for i, wk := range p.work {
		row := p.Rows[wk.idx]
		c := Changed{Name: row.Name, Kind: wk.spec.Kind}
		files := []newFile{{filepath.Join(o.CSRDir, row.Name+".csr"), outs[i].csr, 0o644}}
		if !wk.reuse {
			files = append(files, newFile{filepath.Join(o.CSRDir, row.Name+".key"), outs[i].key, 0o600})
		}
		for _, f := range files {
			if err := w.WriteFile(f.path, f.data, f.mode); err != nil {
				return nil, err
			}
			c.Files = append(c.Files, f.path)
		}
		res.Changed = append(res.Changed, c)
	}
	return res, nil
}
