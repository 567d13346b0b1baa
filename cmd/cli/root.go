// Package cli is certctl's cobra wiring: flags, help text and exit codes. The work itself is
// done by the packages under pkg/.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/recovery"
	"github.com/certctl/certctl/pkg/version"
)

// Exit codes, documented in docs/getting-started.md: cron and monitoring rely on them.
const (
	ExitOK       = 0 // healthy, or the command did what it was asked
	ExitWarning  = 1 // inspect: warnings (e.g. expiring soon), nothing critical
	ExitCritical = 2 // inspect: a critical finding (expired, mismatched key, missing SAN...)
	ExitError    = 3 // usage error or the command failed
)

// verdictError is the outcome of a command whose answer is a severity (inspect's findings, a
// probe or a kubelet that fails, a scheduled run that failed): exit 1 for a warning, 2 for
// critical. err, when set, is said on stderr; without it the exit is silent (the command printed
// its answer).
type verdictError struct {
	sev inspect.Severity
	err error
}

func (e *verdictError) Error() string {
	if e.err == nil {
		return "certctl: " + string(e.sev)
	}
	return e.err.Error()
}
func (e *verdictError) Unwrap() error { return e.err }

// ExitCode is the code certctl exits with: pkg/renew tells a silent exit (a verdict) from a
// failure with a message through it (Unwrap nil), not through the error's text.
func (e *verdictError) ExitCode() int { return exitCode(e) }

// verdict is a command's outcome of severity sev: nil when it is neither a warning nor
// critical (and err is nil: an error of no severity is a failure).
func verdict(sev inspect.Severity, err error) error {
	if sev != inspect.SevWarning && sev != inspect.SevCritical {
		return err
	}
	return &verdictError{sev: sev, err: err}
}

// errAborted: the operator said no at a prompt; the command said so itself ("aborted: nothing
// changed"). Exit 3, nothing more on stderr.
var errAborted = errors.New("aborted by the operator")

// exitCode is where certctl's exit code is decided, from what the command returned, and
// nowhere else: nil is 0; a verdict is 1 (warning) or 2 (critical); anything else, a usage
// error or a failure, is 3.
func exitCode(err error) int {
	var v *verdictError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &v) && v.sev == inspect.SevCritical:
		return ExitCritical
	case errors.As(err, &v) && v.sev == inspect.SevWarning:
		return ExitWarning
	}
	return ExitError
}

// Streams are the command's standard streams.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Globals are the flags every command shares: where the node's files are.
type Globals struct {
	pki.LayoutOptions
	// ResultFile is where a command run in a node Job writes its typed result (noderesult):
	// the container's termination message file. Hidden: the cluster commands set it.
	ResultFile string
	// Record: print the command's result as one schema-tagged record line (noderesult's
	// records) instead of its output for people: what the cluster commands read back from a
	// Job's log (inspect, ca show). Hidden: the cluster commands set it.
	Record  bool
	Streams Streams
}

// Layout resolves the global flags.
func (g *Globals) Layout() pki.Layout { return pki.NewLayout(g.LayoutOptions) }

// where is where a command finds its API client (pki.Layout.Where).
func (g *Globals) where(flag string) kubeconfig.Where { return g.Layout().Where(flag) }

// NewRootCmd builds the command tree.
func NewRootCmd(s Streams) *cobra.Command {
	g := &Globals{Streams: s}
	root := &cobra.Command{
		Use:           "certctl",
		Short:         "Keep the certificates of a kubeadm cluster alive",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		if c.Name() == "version" || c.HasParent() && c.Parent().Name() == "node" {
			return nil // reads nothing of the node; node run's command recovers itself
		}
		recovery.Run(g.Layout(), s.ErrOut) // what an interrupted certctl left
		return nil
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	f := root.PersistentFlags()
	f.StringVar(&g.Root, "root", "/", "resolve every node path, and the symlinks on the way, inside this directory (a copy of a node, or /host in a container)")
	f.StringVar(&g.PKIDir, "pki-dir", "", "PKI directory (default /etc/kubernetes/pki, under --root)")
	f.StringVar(&g.KubeconfigDir, "kubeconfig-dir", "", "kubeconfig directory (default /etc/kubernetes, under --root)")
	f.StringVar(&g.ManifestsDir, "manifests-dir", "", "static-pod manifest directory (default /etc/kubernetes/manifests, under --root)")
	f.StringVar(&g.KubeletDir, "kubelet-dir", "", "kubelet directory (default /var/lib/kubelet, under --root)")
	f.StringVar(&g.UserKubeconfig, "user-kubeconfig", "", "the user's kubeconfig (default $HOME/.kube/config, under --root)")
	f.StringVar(&g.ResultFile, "result-file", "", "write the typed result of a node command (kubeconfig set-server, ca rotate) to this file, NOT under --root (what 'certctl cluster' reads from a Job's termination message)")
	_ = f.MarkHidden("result-file")
	f.BoolVar(&g.Record, "record", false, "print the result of inspect or ca show as one schema-tagged record line instead of the usual output (what 'certctl cluster' reads from a Job's log)")
	_ = f.MarkHidden("record")
	root.AddCommand(
		newInspectCmd(g),
		newProbeCmd(g),
		newSandboxCmd(g),
		newRenewCmd(g),
		newKubeadmConfigCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
		newKubeletServingCmd(g),
		newKubeletClientCmd(g),
		newScheduleCmd(g),
		newMonitoringCmd(g),
		newKubeconfigCmd(g),
		newRestartCmd(g),
		newClusterCmd(g),
		newCACmd(g),
		newVersionCmd(g),
		newNodeCmd(g),
	)
	applyHelp(root)
	return root
}

// Execute runs certctl with args and returns the process exit code.
func Execute(args []string, s Streams) int {
	cmd := NewRootCmd(s)
	cmd.SetArgs(args)
	// SIGINT and SIGTERM (a Job deleted or past its deadline, a systemd stop) end the command's
	// context: a restart in progress puts its manifest back and ends its drain before certctl
	// exits, instead of dying with the manifest out. A second signal kills as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	return finish(cmd.ExecuteContext(ctx), s.ErrOut)
}

// finish says err on stderr, unless the command has said all there is (a verdict without a
// message, an abort), and returns the exit code.
func finish(err error, stderr io.Writer) int {
	var v *verdictError
	silent := errors.Is(err, errAborted) || errors.As(err, &v) && v.err == nil
	if err != nil && !silent {
		fmt.Fprintln(stderr, "error:", err)
	}
	return exitCode(err)
}

// Main is what cmd/certctl calls.
func Main() int {
	return Execute(os.Args[1:], Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
}

func newVersionCmd(g *Globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print certctl's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return version.Get().Render(g.Streams.Out, output)
		},
	}
	flagvalue.FormatVarP(cmd.Flags(), &output, "output", "o", []string{"text", "json"}, "")
	return cmd
}

// show prints v as the one record of kind (--record: what certctl cluster reads from a Job's
// log), else for people (human).
func (g *Globals) show(kind string, v any, human func(io.Writer) error) error {
	if g.Record {
		return noderesult.WriteRecord(g.Streams.Out, kind, v)
	}
	return human(g.Streams.Out)
}

// write puts a command's output, made by a pkg function, on stdout.
func (g *Globals) write(out []byte, err error) error {
	if err == nil {
		_, err = g.Streams.Out.Write(out)
	}
	return err
}
