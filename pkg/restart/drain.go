package restart

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/certctl/certctl/pkg/fsutil"
)

// DrainTable is the nftables table (family inet) in which certctl refuses new connections to
// the apiserver while it takes the node out of a load balancer's rotation.
const DrainTable = "certctl-drain"

// Drain takes this node's apiserver out of a load balancer before it is stopped: new TCP
// connections to its port that come from another machine (any interface but lo) are reset,
// in the network namespace certctl runs in (the node's: a restart first checks that it shares
// the kubelet's). The balancer's health checks then fail and it takes the node out; a
// connection it still sends meanwhile is reset at once, which HAProxy (retries, option
// redispatch) sends to another apiserver. Connections already open finish on the old
// apiserver; the node's own clients (the kubelet's probes, controller-manager, scheduler)
// connect through lo and are not refused.
//
// Without it the balancer learns of a stopped apiserver only from its failed checks: the
// apiserver's /readyz fails as soon as it gets SIGTERM, and the requests the balancer sends it
// until then fail (../shared/LAB.md: about one per restart on the lab).
type Drain struct {
	// Wait is how long the rule stands before the apiserver is stopped: the balancer's time to
	// notice (HAProxy: fall x inter).
	Wait time.Duration
	// NetNS is a file descriptor of the network namespace; 0: certctl's own.
	NetNS int
	// Record, when set, is a file that says which process's drain stands (written once the
	// rule is in, removed with it): a certctl killed during the drain (a Job deleted at its
	// deadline: SIGTERM) leaves the rule, and with it the node's apiserver out of the load
	// balancer, until RecoverDrain sees its owner gone and removes both.
	Record string
}

// drainRecord is what Drain.Record holds.
type drainRecord struct {
	Port int       `json:"port"`
	Time time.Time `json:"time"`
	Owner
}

func (d Drain) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if d.NetNS > 0 {
		opts = append(opts, nftables.WithNetNSFd(d.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// Begin installs the rule for port (a drain left by a certctl that died is replaced) and
// waits d.Wait; end removes the rule. On error nothing stays installed.
func (d Drain) Begin(ctx context.Context, port int) (end func() error, err error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("drain: port %d", port)
	}
	if _, err := d.Remove(); err != nil {
		return nil, err
	}
	c, err := d.conn()
	if err != nil {
		return nil, err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: DrainTable})
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	dport := make([]byte, 2)
	binary.BigEndian.PutUint16(dport, uint16(port))
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		// iifname != "lo"
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
		// meta l4proto tcp
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		// tcp dport PORT
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
		// tcp flags & (syn|ack) == syn: a new connection, not one already open
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		// reject with tcp reset
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	}})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("drain: add the nftables table %s: %w (certctl needs CAP_NET_ADMIN in the node's network namespace; or run without --lb-drain)", DrainTable, err)
	}
	end = func() error {
		if _, err := d.Remove(); err != nil {
			return fmt.Errorf("%w: remove it by hand (nft delete table inet %s), or the node's apiserver stays out of the load balancer", err, DrainTable)
		}
		if d.Record != "" {
			if err := os.Remove(d.Record); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("drain: remove its record: %w", err)
			}
		}
		return nil
	}
	if d.Record != "" {
		rec, _ := json.Marshal(drainRecord{Port: port, Time: time.Now().UTC(), Owner: self()})
		if err := fsutil.WriteFileAtomic(d.Record, rec, 0o600); err != nil {
			return nil, errors.Join(fmt.Errorf("drain: write its record: %w", err), end())
		}
	}
	if d.Wait > 0 {
		t := time.NewTimer(d.Wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), end())
		case <-t.C:
		}
	}
	return end, nil
}

// RecoverDrain removes a drain that a certctl left behind when it was killed: d.Record names a
// process that is gone (or ran before the last boot). A drain whose process still runs is that
// restart's, and left alone; without a record nothing is done. It says what it did on w.
func RecoverDrain(d Drain, w io.Writer) error {
	data, err := os.ReadFile(d.Record)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the drain record %s: %w", d.Record, err)
	}
	var rec drainRecord
	_ = json.Unmarshal(data, &rec) // a damaged record has no live owner: the drain is removed
	if rec.Owner.Alive() && rec.Owner.PID != os.Getpid() {
		return nil
	}
	removed, err := d.Remove()
	if err != nil {
		return fmt.Errorf("an interrupted restart left its load-balancer drain (record %s): %w; remove it by hand (nft delete table inet %s), or the node's apiserver stays out of the load balancer", d.Record, err, DrainTable)
	}
	if err := os.Remove(d.Record); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the drain record %s: %w", d.Record, err)
	}
	if removed {
		fmt.Fprintf(w, "certctl: removed the drain an interrupted restart (pid %d, %s) left on port %d: the apiserver accepts connections from other machines again\n", rec.PID, rec.Time.Format(time.RFC3339), rec.Port)
	}
	return nil
}

// Remove deletes the drain table if there is one; it reports whether there was.
func (d Drain) Remove() (bool, error) {
	c, err := d.conn()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("drain: list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == DrainTable {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return true, fmt.Errorf("drain: delete the nftables table %s: %w", DrainTable, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// ifname is an interface name as nftables compares it (IFNAMSIZ bytes, NUL-padded).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
