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
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List complete backups, oldest first",
		Args:  cobra.NoArgs,
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
		Args:  cobra.ExactArgs(1),
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
