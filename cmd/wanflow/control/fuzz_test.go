package control

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseQuery feeds raw query strings to ParseFlowQuery and
// ParseExplainQuery, and newline-separated arguments to ParseExplainArgs:
// none may panic, and whatever parses must come back unchanged through
// Values, the query string and the parser again.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []struct{ raw, args string }{
		{"", ""},
		{"uplink=adsl&host=10.77.0.10&remote=203.0.113.5&proto=tcp&port=443&sort=bytes&limit=20", "tcp\n10.77.0.10:51000\n203.0.113.5:443"},
		{"proto=tcp&src=10.77.0.10:51000&dst=203.0.113.5:443", "icmp\n10.77.0.10\n8.8.8.8"},
		{"proto=icmp&src=10.77.0.10:7&dst=8.8.8.8", "icmp\n10.77.0.10:7\n8.8.8.8"},
		{"proto=UDP&src=10.0.0.1:053&dst=1.1.1.1:53&limit=0", "UDP\n10.0.0.1:053\n1.1.1.1:53"},
		{"port=1&port=2", "tcp\n1.2.3.4"},
		{"host=%00&limit=-1", "tcp\n[::1]:80\n1.2.3.4:80"},
		{"limit=100000&sort=age&proto=icmp", "icmp\n1.2.3.4\n5.6.7.8:9"},
		{"a;b=c", "\n\n\n"},
	} {
		f.Add(s.raw, s.args)
	}
	f.Fuzz(func(t *testing.T, raw, args string) {
		if v, err := url.ParseQuery(raw); err == nil {
			checkFlowRoundTrip(t, v)
			checkExplainRoundTrip(t, v)
		}
		checkArgsRoundTrip(t, strings.Split(args, "\n"))
	})
}

func checkFlowRoundTrip(t *testing.T, v url.Values) {
	t.Helper()
	f, err := ParseFlowQuery(v)
	if err != nil {
		return
	}
	enc := flowQueryOf(f).Values().Encode()
	v2, err := url.ParseQuery(enc)
	if err != nil {
		t.Fatalf("ParseQuery(%q) of a FlowQuery: %v", enc, err)
	}
	f2, err := ParseFlowQuery(v2)
	if err != nil {
		t.Fatalf("ParseFlowQuery(%q), from %v: %v", enc, v, err)
	}
	if f2 != f {
		t.Fatalf("round trip of %v: %+v, then %q gives %+v", v, f, enc, f2)
	}
}

func checkExplainRoundTrip(t *testing.T, v url.Values) {
	t.Helper()
	k, err := ParseExplainQuery(v)
	if err != nil {
		return
	}
	enc := explainQueryOf(k).Values().Encode()
	v2, err := url.ParseQuery(enc)
	if err != nil {
		t.Fatalf("ParseQuery(%q) of an ExplainQuery: %v", enc, err)
	}
	k2, err := ParseExplainQuery(v2)
	if err != nil {
		t.Fatalf("ParseExplainQuery(%q), from %v: %v", enc, v, err)
	}
	if k2 != k {
		t.Fatalf("round trip of %v: %+v, then %q gives %+v", v, k, enc, k2)
	}
}

func checkArgsRoundTrip(t *testing.T, args []string) {
	t.Helper()
	q, err := ParseExplainArgs(args)
	if err != nil {
		return
	}
	q2, err := ParseExplainArgs([]string{q.Proto, q.Src, q.Dst})
	if err != nil {
		t.Fatalf("ParseExplainArgs(%q), normalised from %q: %v", q, args, err)
	}
	if q2 != q {
		t.Fatalf("ParseExplainArgs(%q) = %+v, then %+v", args, q, q2)
	}
	k, err := ParseExplainQuery(q.Values())
	if err != nil {
		t.Fatalf("ParseExplainQuery(%v), from args %q: %v", q.Values(), args, err)
	}
	if got := explainQueryOf(k); got != q {
		t.Fatalf("args %q: query %+v parses to %+v, normalised %+v", args, q, k, got)
	}
}
