package cli

import (
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
			return backup.RenderList(g.Streams.Out, list, g.Layout().BackupRoot())
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
			if err == nil {
				res.Render(g.Streams.Out)
			}
			return err
		},
	}
}
