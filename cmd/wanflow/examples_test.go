package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
)

// examplesDir holds the example configurations, relative to this package.
var examplesDir = filepath.Join("..", "..", "docs", "examples")

// exampleChecks lists every file of docs/examples with what it must show,
// beyond passing `wanflow check`: the setups the docs promise. A file added
// to the directory must be added here, and a file listed here must exist.
var exampleChecks = map[string]func(t *testing.T, c *config.Config){
	"reference-pi.yaml": func(t *testing.T, c *config.Config) {
		wantLAN(t, c, "eth0", "192.168.1.0/24")
		wantUplink(t, c, "adsl", "eth0", "192.168.1.1", 1)
		wantUplink(t, c, "4g", "usb0", "192.168.42.129", 2)
		u := wantUplink(t, c, "3g", "ppp0", "", 3)
		if u != nil && u.WhileDown == "" {
			t.Errorf("uplink 3g has no while_down redial hook")
		}
		if c.LAN.DNS == nil || len(c.LAN.DNS.Listen) != 1 || c.LAN.DNS.Listen[0].AddrPort.Addr().String() != "192.168.1.5" {
			t.Errorf("lan.dns.listen: want the router 192.168.1.5")
		}
	},
	"office-two-isp.yaml": func(t *testing.T, c *config.Config) {
		if len(c.Uplinks) != 2 || c.Uplinks[0].Tier != c.Uplinks[1].Tier || c.Uplinks[0].Weight == c.Uplinks[1].Weight {
			t.Errorf("want two uplinks in one tier with different weights (load-balanced by weight)")
		}
	},
	"home-failover.yaml": func(t *testing.T, c *config.Config) {
		if len(c.Uplinks) != 2 || c.Uplinks[0].Tier >= c.Uplinks[1].Tier {
			t.Errorf("want two uplinks, the second in a higher tier (failover only)")
		}
	},
}

// checkConfigFile runs what `wanflow check -c path` runs (cmdCheck: parse,
// validate, print the warnings and the plan; none of it looks at the host)
// and fails on an error or on any warning it prints.
func checkConfigFile(t *testing.T, path string) *config.Config {
	t.Helper()
	out, err := capture(t, func() error { return cmdCheck([]string{"-c", path}) })
	if err != nil {
		t.Fatalf("wanflow check -c %s: %v", path, err)
	}
	if !strings.Contains(out, path+": OK\n") {
		t.Errorf("wanflow check -c %s does not say %q:\n%s", path, path+": OK", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "warning: ") {
			t.Errorf("wanflow check -c %s: %s", path, line)
		}
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return c
}

// TestExamples checks every file in docs/examples with `wanflow check`
// (no errors, no warnings) and against what the docs say it shows.
func TestExamples(t *testing.T) {
	ents, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		found = append(found, e.Name())
		if _, ok := exampleChecks[e.Name()]; !ok {
			t.Errorf("%s: not tested: add it to exampleChecks", filepath.Join(examplesDir, e.Name()))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(exampleChecks)) {
		check := exampleChecks[name]
		if !slices.Contains(found, name) {
			t.Errorf("%s is missing", filepath.Join(examplesDir, name))
			continue
		}
		t.Run(name, func(t *testing.T) {
			c := checkConfigFile(t, filepath.Join(examplesDir, name))
			check(t, c)
		})
	}
}

// configFence opens a full configuration in the docs: "```yaml
// wanflow-config", optionally followed by the example file the block
// repeats ("```yaml wanflow-config examples/reference-pi.yaml").
var configFence = regexp.MustCompile("(?m)^```yaml wanflow-config( [^\n]*)?\n")

// anyYAMLFence opens any YAML block.
var anyYAMLFence = regexp.MustCompile("(?m)^```yaml[^\n]*\n")

// topLevelKey matches a line that starts a top-level section of a config.
var topLevelKey = regexp.MustCompile(`(?m)^(lan|uplinks):`)

// docsWithConfigs are the docs (relative to docs/; the README too) whose
// full configurations TestExampleDocConfigs
// checks, and whose `wanflow check` excerpts TestExamplePlansInDocs checks.
var docsWithConfigs = []string{"migrating.md", "operations.md", "troubleshooting.md", "configuration.md", "architecture.md", "security.md", "../README.md"}

// TestExampleDocConfigs checks the full configurations in the docs: every
// "```yaml wanflow-config" block passes `wanflow check` without warnings,
// one that names an example file is that file, byte for byte, and a YAML
// block with both a top-level lan: and uplinks: must be marked so.
func TestExampleDocConfigs(t *testing.T) {
	total := 0
	for _, doc := range docsWithConfigs {
		path := filepath.Join("..", "..", "docs", doc)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range anyYAMLFence.FindAllStringIndex(text, -1) {
			fence := text[m[0] : m[1]-1]
			body, _, ok := strings.Cut(text[m[1]:], "```")
			line := strings.Count(text[:m[0]], "\n") + 1
			where := path + ":" + strconv.Itoa(line)
			if !ok {
				t.Errorf("%s: unterminated yaml block", where)
				continue
			}
			full := len(topLevelKey.FindAllString(body, -1)) >= 2
			marked := configFence.MatchString(fence + "\n")
			if !marked {
				if full {
					t.Errorf("%s: a full configuration fenced %q: fence it \"```yaml wanflow-config\" so that it is checked", where, fence)
				}
				continue
			}
			total++
			t.Run(doc+":"+strconv.Itoa(line), func(t *testing.T) {
				if file := strings.TrimSpace(configFence.FindStringSubmatch(fence + "\n")[1]); file != "" {
					want, err := os.ReadFile(filepath.Join("..", "..", "docs", file))
					if err != nil {
						t.Fatalf("%s names %s: %v", where, file, err)
					}
					if body != string(want) {
						t.Errorf("%s differs from docs/%s: keep them the same", where, file)
					}
				}
				f := filepath.Join(t.TempDir(), filepath.Base(doc)+"-"+strconv.Itoa(line)+".yaml")
				if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				checkConfigFile(t, f)
			})
		}
	}
	if total < 2 {
		t.Errorf("%d checked configurations in %v, want at least 2 (the reference box and the mwan3 translation in migrating.md)", total, docsWithConfigs)
	}
}

// wantLAN checks the LAN interface and prefix of c.
func wantLAN(t *testing.T, c *config.Config, iface, prefix string) {
	t.Helper()
	if c.LAN.Interface != iface || len(c.LAN.Prefixes) != 1 || c.LAN.Prefixes[0].String() != prefix {
		t.Errorf("lan: interface %s, prefixes %v; want %s, [%s]", c.LAN.Interface, c.LAN.Prefixes, iface, prefix)
	}
}

// wantUplink checks that c has uplink name on iface with gateway gw ("":
// none configured) in tier, and returns it (nil if there is none).
func wantUplink(t *testing.T, c *config.Config, name, iface, gw string, tier int) *config.Uplink {
	t.Helper()
	for i := range c.Uplinks {
		u := &c.Uplinks[i]
		if u.Name != name {
			continue
		}
		got := ""
		if u.Gateway.IsValid() {
			got = u.Gateway.String()
		}
		if u.Interface != iface || got != gw || u.Tier != tier {
			t.Errorf("uplink %s: interface %s, gateway %q, tier %d; want %s, %q, %d", name, u.Interface, got, u.Tier, iface, gw, tier)
		}
		return u
	}
	t.Errorf("no uplink %s", name)
	return nil
}

// checkFence opens an excerpt of what `wanflow check` prints for an example
// file: "```text wanflow-check examples/reference-pi.yaml".
var checkFence = regexp.MustCompile("(?m)^```text wanflow-check ([^\n]+)\n")

// TestExamplePlansInDocs checks that every line of a "```text
// wanflow-check FILE" excerpt in the docs ("..." marks lines left out) is a
// line `wanflow check` prints for that file today.
func TestExamplePlansInDocs(t *testing.T) {
	total := 0
	for _, doc := range docsWithConfigs {
		path := filepath.Join("..", "..", "docs", doc)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range checkFence.FindAllStringSubmatchIndex(text, -1) {
			total++
			where := path + ":" + strconv.Itoa(strings.Count(text[:m[0]], "\n")+1)
			body, _, ok := strings.Cut(text[m[1]:], "```")
			if !ok {
				t.Errorf("%s: unterminated block", where)
				continue
			}
			file := filepath.Join("..", "..", "docs", strings.TrimSpace(text[m[2]:m[3]]))
			out, err := capture(t, func() error { return cmdCheck([]string{"-c", file}) })
			if err != nil {
				t.Errorf("%s: wanflow check -c %s: %v", where, file, err)
				continue
			}
			lines := strings.Split(out, "\n")
			for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
				if l != "..." && !slices.Contains(lines, l) {
					t.Errorf("%s: wanflow check -c %s no longer prints %q", where, file, l)
				}
			}
		}
	}
	if total == 0 {
		t.Errorf("no wanflow-check excerpt in %v, want the reference box's in migrating.md", docsWithConfigs)
	}
}
