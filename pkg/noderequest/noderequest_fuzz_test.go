package noderequest

// Fuzz target for the node request a Job's certctl decodes from its arguments. `make fuzz`
// runs it; without -fuzz the seeds and testdata/fuzz/FuzzDecode run as ordinary tests.

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode: any request text never panics Decode; a request it accepts is of this version,
// makes a command line whose first word is certctl's (no flag smuggled in front of the
// command), and encodes and decodes back equal.
func FuzzDecode(f *testing.F) {
	f.Add(`{"version":"certctl.io/node-request/v1","op":"renew","names":["all"],"sans":["10.2.1.139"],"restart":{"stopGrace":"3s","lbDrain":"3s"}}`)
	f.Add(`{"version":"certctl.io/node-request/v1","op":"ca rotate","names":["ca","sa"],"phase":"trust","newCADir":"/rotation","restart":{},"result":true}`)
	f.Add(`{"version":"certctl.io/node-request/v1","op":"inspect","record":true}`)
	f.Add(`{"version":"certctl.io/node-request/v2","op":"inspect"}`)
	f.Add(`{"version":"certctl.io/node-request/v1","op":"renew","names":["--root=/"]}`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, data string) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		if r.Version != Version {
			t.Fatalf("accepted version %q", r.Version)
		}
		args, err := r.Args()
		if err != nil || len(args) == 0 || strings.HasPrefix(args[0], "-") {
			t.Fatalf("args %q, %v", args, err)
		}
		s, err := Encode(*r)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(s)
		if err != nil {
			t.Fatalf("a request Encode wrote does not decode: %v\n%s", err, s)
		}
		if againArgs, _ := again.Args(); !reflect.DeepEqual(args, againArgs) || r.Result != again.Result || r.Record != again.Record {
			t.Fatalf("round trip: %q\n%q", args, againArgs)
		}
		for _, a := range args {
			if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
				t.Fatalf("a short flag in %q", args)
			}
		}
	})
}
