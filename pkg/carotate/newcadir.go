package carotate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ReadNewCADir reads the new CAs in dir, as cluster ca-rotate's Jobs mount the rotation Secret
// (CA.crt, and CA.key when there: a worker's Job gets the certificate only; sa.pub and sa.key
// for the service-account key), for each of cas it holds; it must hold at least one.
func ReadNewCADir(dir string, cas []string) (map[string]*NewCA, error) {
	out := map[string]*NewCA{}
	for _, ca := range cas {
		pubName, keyName := SecretNames(ca)
		crt, key := filepath.Join(dir, pubName), filepath.Join(dir, keyName)
		if _, err := os.Stat(crt); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if _, err := os.Stat(key); err != nil {
			key = ""
		}
		n, err := ReadNewCA(crt, key)
		if err != nil {
			return nil, err
		}
		out[ca] = n
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--new-ca-dir %s holds no new CA of %s (want %s.crt)", dir, strings.Join(cas, ", "), cas[0])
	}
	return out, nil
}

// ReadGiven sets o's new CA as certctl ca rotate's flags give it: dir (--new-ca-dir, not under
// the root: CA.crt and CA.key of each of cas), or cert and key (--new-ca-cert, --new-ca-key:
// node paths, under o.Layout's root); none given leaves it to the phase (generate, or read
// new.crt).
func (o *Options) ReadGiven(dir, cert, key string, cas []string) error {
	var err error
	switch {
	case dir != "" && cert != "":
		return errors.New("--new-ca-dir and --new-ca-cert exclude each other")
	case dir != "":
		o.NewCAs, err = ReadNewCADir(dir, cas)
	case cert != "":
		if key != "" {
			key = o.Layout.Resolve(key)
		}
		o.NewCA, err = ReadNewCA(o.Layout.Resolve(cert), key)
	case key != "":
		return errors.New("--new-ca-key needs --new-ca-cert")
	}
	return err
}
