// Command mkimage writes a one-layer container image as a docker-archive tarball, the format
// `ctr images import` reads, so the lab runs the binaries it built without an image registry.
//
//	mkimage -o kube-apiserver.tar -tag registry.k8s.io/kube-apiserver:v1.32.4 \
//	    -file /path/to/kube-apiserver=/usr/local/bin/kube-apiserver [-entrypoint /usr/local/bin/x] \
//	    [-label org.opencontainers.image.revision=abc123 ...]
//
// The layer holds the given files (mode 0755) plus empty /etc, /tmp and /var directories.
// `make image` builds certctl's own image with it (no docker daemon, no registry).
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var files, labels fileList
	out := flag.String("o", "", "output tarball")
	tag := flag.String("tag", "", "image name, e.g. registry.k8s.io/pause:3.10")
	entry := flag.String("entrypoint", "", "entrypoint (default: none; the pod spec names the command)")
	flag.Var(&files, "file", "SRC=DEST to put into the image (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	flag.Parse()
	if *out == "" || *tag == "" || len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o OUT.tar -tag NAME:TAG -file SRC=DEST [-file ...] [-entrypoint PATH]")
		os.Exit(2)
	}
	if err := write(*out, *tag, *entry, files, labels); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func write(out, tag, entry string, files, labels []string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	layer := filepath.Join(dir, "layer.tar")
	diffID, err := writeLayer(layer, files)
	if err != nil {
		return err
	}
	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Env": []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + diffID}},
	}
	if entry != "" {
		cfg["config"].(map[string]any)["Entrypoint"] = []string{entry}
	}
	if len(labels) > 0 {
		m := map[string]string{}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				return fmt.Errorf("-label %q: want KEY=VALUE", l)
			}
			m[k] = v
		}
		cfg["config"].(map[string]any)["Labels"] = m
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cfgData)
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": []string{tag}, "Layers": []string{diffID + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = add(cfgName, cfgData)
	if err == nil {
		err = add("manifest.json", manifest)
	}
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Name: diffID + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	}
	if err == nil {
		err = copyFile(tw, layer, diffID+"/layer.tar", 0o644)
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// writeLayer writes the layer tarball and returns its sha256 (the image's diff ID).
func writeLayer(path string, files []string) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(f, h))
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		var parts []string
		for _, p := range strings.Split(strings.Trim(d, "/"), "/") {
			parts = append(parts, p)
			name := strings.Join(parts, "/") + "/"
			if dirs[name] {
				continue
			}
			dirs[name] = true
			mode := int64(0o755)
			if name == "tmp/" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []string{"etc", "tmp", "var", "usr/local/bin"} {
		if err := mkdir(d); err != nil {
			return "", err
		}
	}
	for _, spec := range files {
		src, dest, ok := strings.Cut(spec, "=")
		if !ok || !strings.HasPrefix(dest, "/") {
			return "", fmt.Errorf("-file %q: want SRC=/absolute/dest", spec)
		}
		if err := mkdir(filepath.Dir(dest)); err != nil {
			return "", err
		}
		if err := copyFile(tw, src, strings.TrimPrefix(dest, "/"), 0o755); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Sync()
}

func copyFile(tw *tar.Writer, src, name string, mode int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}
