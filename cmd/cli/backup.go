package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/backup"
)

func newBackupCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "List the backups certctl made before changing files",
		Long: `Before certctl changes a file (renew, restore, restart) it copies it to a timestamped
directory under <kubeconfig dir>/certctl-backups/ (/etc/kubernetes/certctl-backups by
default) with a manifest.json: the backup id, the time, the command, and every file with its
original path, mode and SHA-256. 'certctl restore ID' puts them back. See docs/renew.md.`,
		Example: `  certctl backup list
  certctl restore 20261125T023512Z-3fa1c2`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List complete backups, oldest first",
		Example: `  certctl backup list
  certctl --root /tmp/node backup list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := backup.List(g.Layout())
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintf(g.Streams.Out, "no backups under %s\n", g.Layout().BackupRoot())
				return nil
			}
			tw := tabwriter.NewWriter(g.Streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTIME\tFILES\tCOMMAND")
			for _, m := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.ID, m.Time.Format(time.RFC3339), len(m.Files), m.Command)
			}
			return tw.Flush()
		},
	})
	return cmd
}

func newRestoreCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore ID",
		Short: "Put the files of a backup back in place",
		Long: `restore checks every file of backup ID against the SHA-256 in its manifest (a damaged
backup restores nothing), backs up the current files first (so a restore can itself be
undone), then writes the files back with their original modes as one journaled change
under the node lock (the lock renew and restart hold): killed at any instant, the next
certctl command completes or undoes it, so a key never sits beside another certificate.
Files that did not exist when the backup was made are removed.

Running components keep the certificates they loaded in memory: restart them afterwards.`,
		Example: `  certctl backup list
  certctl restore 20261125T023512Z-3fa1c2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := backup.RestoreLocked(g.Layout(), args[0], 30*time.Second, g.Streams.ErrOut)
			if err != nil {
				return err
			}
			m, pre := res.Restored, res.Previous
			var names []string
			for _, f := range m.Files {
				names = append(names, f.Path)
			}
			fmt.Fprintf(g.Streams.Out, "restored backup %s (%s, %s):\n  %s\nthe previous files are in backup %s\n",
				m.ID, m.Command, m.Time.Format(time.RFC3339), strings.Join(names, "\n  "), pre.ID)
			return nil
		},
	}
}
