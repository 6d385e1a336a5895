package config

import (
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"strings"
)

// secretWord matches the words that mark a credential in a hook command
// line: "--password=x", "PASS=x", "token x", "apikey"...
var secretWord = regexp.MustCompile(`(?i)(pass(word|wd)?|secret|token|api[-_]?key|credential)`)

// Secrets lists where c holds what looks like a credential: an HTTP probe
// URL with a user or password, a hook command naming a password, secret,
// token or key. Each entry names the key (uplinks[4g].on_down); the
// values are never repeated.
func (c *Config) Secrets() []string {
	var out []string
	probes := func(key string, p Probes) {
		for _, t := range p.Targets {
			if t.URL == "" {
				continue
			}
			if u, err := url.Parse(t.URL); err == nil && u.User != nil {
				out = append(out, key+".targets (a URL with a user or password)")
				return
			}
		}
	}
	probes("probes", c.Probes)
	for _, u := range c.Uplinks {
		key := "uplinks[" + u.Name + "]"
		probes(key+".probes", u.Probes)
		for _, h := range []struct{ name, line string }{{"on_down", u.OnDown}, {"on_up", u.OnUp}, {"while_down", u.WhileDown}} {
			if secretWord.MatchString(h.line) {
				out = append(out, key+"."+h.name)
			}
		}
	}
	return out
}

// secretsWarning returns the warning for a config file of mode mode that
// holds secrets, or "" when the file is not readable by group or others or
// holds none.
func secretsWarning(path string, mode fs.FileMode, c *Config) string {
	if mode.Perm()&0o044 == 0 {
		return ""
	}
	s := c.Secrets()
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: readable by other users (mode %04o) but it holds what looks like credentials (%s): chmod 600 %s",
		path, mode.Perm(), strings.Join(s, ", "), path)
}
