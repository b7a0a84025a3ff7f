package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// pairs is a repeatable NAME=VALUE flag.
type pairs []string

func (p *pairs) String() string     { return strings.Join(*p, ",") }
func (p *pairs) Set(v string) error { *p = append(*p, v); return nil }

// zone is what dns-serve answers: addresses and aliases by lower-case
// name with the trailing dot.
type zone struct {
	addrs  map[string][]netip.Addr
	cnames map[string]string
	ttl    uint32
}

func fqdn(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) + "." }

// dnsServe answers A, AAAA and CNAME queries over UDP from a table given on
// the command line:
//
//	tgprobe dns-serve -addr :53 -a www.allowed.test=10.0.0.2 -cname alias.test=www.allowed.test
//
// A name with an alias is answered with the whole chain, CNAMEs first.
func dnsServe(args []string) int {
	fs := flag.NewFlagSet("dns-serve", flag.ExitOnError)
	addr := fs.String("addr", ":53", "UDP address to answer on")
	ttl := fs.Uint("ttl", 60, "TTL of every record, seconds")
	var as, cnames pairs
	fs.Var(&as, "a", "NAME=IP: an A or AAAA record (repeatable)")
	fs.Var(&cnames, "cname", "NAME=TARGET: a CNAME record (repeatable)")
	fs.Parse(args)
	z := zone{addrs: map[string][]netip.Addr{}, cnames: map[string]string{}, ttl: uint32(*ttl)}
	for _, p := range as {
		name, ip, ok := strings.Cut(p, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil {
			fmt.Fprintf(os.Stderr, "bad -a %q: want NAME=IP\n", p)
			return exitError
		}
		z.addrs[fqdn(name)] = append(z.addrs[fqdn(name)], a.Unmap())
	}
	for _, p := range cnames {
		name, target, ok := strings.Cut(p, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "bad -cname %q: want NAME=TARGET\n", p)
			return exitError
		}
		z.cnames[fqdn(name)] = fqdn(target)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pc, err := net.ListenPacket("udp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return exitError
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	fmt.Println("ready")
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return exitOK
		}
		if out, err := z.answer(buf[:n]); err == nil {
			pc.WriteTo(out, from)
		}
	}
}

func (z zone) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	name := strings.ToLower(q.Name.String())
	var chain []dnsmessage.Resource
	for hops := 0; hops < 8; hops++ {
		target, ok := z.cnames[name]
		if !ok {
			break
		}
		chain = append(chain, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: z.ttl},
			Body:   &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)},
		})
		name = target
	}
	addrs, known := z.addrs[name]
	if !known && len(chain) == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, r := range chain {
		if err := b.CNAMEResource(r.Header, *r.Body.(*dnsmessage.CNAMEResource)); err != nil {
			return nil, err
		}
	}
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: z.ttl}
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			err = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			err = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// resolver asks the DNS server at addr (UDP) and nothing else.
func resolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// resolveOne looks host up at the resolver (A records for tcp4/udp4 and
// plain networks, AAAA for tcp6/udp6) and returns its first address.
func resolveOne(r *net.Resolver, network, host string, timeout time.Duration) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	family := "ip4"
	if strings.HasSuffix(network, "6") {
		family = "ip6"
	}
	ips, err := r.LookupNetIP(ctx, family, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: no address", host)
	}
	return ips[0].Unmap(), nil
}
