package detect

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// threatSet is an immutable snapshot of the loaded threat lists: swapped whole by
// SetThreatLists so Observe never locks for it.
type threatSet struct {
	addrs    map[netip.Addr]*threatList
	prefixes []threatPrefix
}

type threatList struct {
	name string
	tor  bool
}

type threatPrefix struct {
	p    netip.Prefix
	list *threatList
}

// lookup returns the list an address is on, or nil.
func (s *threatSet) lookup(a netip.Addr) *threatList {
	if s == nil || !a.IsValid() {
		return nil
	}
	a = a.Unmap()
	if l := s.addrs[a]; l != nil {
		return l
	}
	for _, p := range s.prefixes {
		if p.p.Contains(a) {
			return p.list
		}
	}
	return nil
}

// loadThreatLists reads every list: one address or CIDR a line, '#' starts a comment,
// blank lines ignored. A list whose name contains "tor" (any case) is a Tor exit list
// (TorIPCaller); any other is a custom malicious list (MaliciousIPCaller.Custom).
func loadThreatLists(lists []config.ThreatList) (*threatSet, error) {
	s := &threatSet{addrs: make(map[netip.Addr]*threatList)}
	for _, tl := range lists {
		f, err := os.Open(tl.File)
		if err != nil {
			return nil, fmt.Errorf("open threat list %s: %w", tl.Name, err)
		}
		err = parseThreatList(s, tl.Name, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read threat list %s (%s): %w", tl.Name, tl.File, err)
		}
	}
	return s, nil
}

func parseThreatList(s *threatSet, name string, f *os.File) error {
	l := &threatList{name: name, tor: strings.Contains(strings.ToLower(name), "tor")}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, "/") {
			p, err := netip.ParsePrefix(line)
			if err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			p = p.Masked()
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if p.IsSingleIP() {
				s.addrs[p.Addr()] = l
			} else {
				s.prefixes = append(s.prefixes, threatPrefix{p: p, list: l})
			}
			continue
		}
		a, err := netip.ParseAddr(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		s.addrs[a.Unmap()] = l
	}
	return sc.Err()
}
