package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeImage runs `make image` (into a temporary directory) and checks the docker-archive
// tarball as `ctr images import` / `docker load` read it: manifest.json names the tag and the
// config, the config's diff ID is the layer's sha256, the entrypoint is certctl, and the layer
// holds /etc, /tmp and a static certctl at /usr/local/bin/certctl that runs when extracted.
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds certctl")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skipf("SKIP (loud): make is not installed: %v", err)
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, "certctl-image.tar")
	cmd := exec.Command("make", "image", "IMAGE_TAR="+tarball, "IMAGE_BIN="+filepath.Join(dir, "build", "certctl"))
	cmd.Dir = filepath.Join("..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	files := readTar(t, tarball)

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != "localhost/certctl:dev" || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest.json = %+v, want one image tagged localhost/certctl:dev with one layer", manifest)
	}
	var cfg struct {
		OS     string `json:"os"`
		Config struct {
			Entrypoint []string          `json:"Entrypoint"`
			Env        []string          `json:"Env"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	cfgData, ok := files[manifest[0].Config]
	if !ok {
		t.Fatalf("config %s not in the tarball", manifest[0].Config)
	}
	if sum := sha256.Sum256(cfgData); hex.EncodeToString(sum[:])+".json" != manifest[0].Config {
		t.Errorf("config file name %s is not its sha256", manifest[0].Config)
	}
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || strings.Join(cfg.Config.Entrypoint, " ") != "/usr/local/bin/certctl" {
		t.Errorf("config os %q entrypoint %v, want linux and [/usr/local/bin/certctl]", cfg.OS, cfg.Config.Entrypoint)
	}
	if cfg.Config.Labels["org.opencontainers.image.title"] != "certctl" || cfg.Config.Labels["org.opencontainers.image.revision"] == "" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
	layer, ok := files[manifest[0].Layers[0]]
	if !ok {
		t.Fatalf("layer %s not in the tarball", manifest[0].Layers[0])
	}
	if sum := sha256.Sum256(layer); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff_ids %v do not match the layer's sha256 %x", cfg.RootFS.DiffIDs, sum)
	}

	// The layer, extracted as a container runtime would.
	rootfs := filepath.Join(dir, "rootfs")
	tr := tar.NewReader(bytes.NewReader(layer))
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		p := filepath.Join(rootfs, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []string{"etc/", "tmp/"} {
		if h := seen[d]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("layer lacks directory /%s", d)
		}
	}
	h := seen["usr/local/bin/certctl"]
	if h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("layer lacks an executable /usr/local/bin/certctl: %+v", h)
	}
	bin := filepath.Join(rootfs, "usr", "local", "bin", "certctl")
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("certctl in the image is dynamically linked (it has an ELF interpreter): it will not run in a scratch/distroless image")
		}
	}
	ef.Close()
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("certctl --help from the image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "certctl inspects, renews and rolls out") || !strings.Contains(string(out), "inspect") {
		t.Errorf("certctl --help from the image:\n%s", out)
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		}
	}
}
