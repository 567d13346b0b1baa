package testenv_test

import "crypto/x509/pkix"

func pkixName(cn, org string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{org}}
}
