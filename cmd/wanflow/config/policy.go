package config

import (
	"net/netip"

	"github.com/wanflow/wanflow/uplinks/policy"
)

// PolicyUplinks returns the uplinks as uplinks/policy sees them, indexed by
// uplink id, all Available. The caller sets availability from health.
func (c *Config) PolicyUplinks() []policy.Uplink {
	us := make([]policy.Uplink, len(c.Uplinks))
	for i, u := range c.Uplinks {
		us[i] = policy.Uplink{Name: u.Name, Tier: u.Tier, Weight: u.Weight, Available: true}
	}
	return us
}

// PolicyRules returns the rules as uplinks/policy sees them.
func (c *Config) PolicyRules() []policy.Rule {
	rs := make([]policy.Rule, len(c.Rules))
	for i, r := range c.Rules {
		pr := policy.Rule{Name: r.Name, Proto: uint8(r.Proto), Uplinks: append([]string(nil), r.Uplinks...)}
		if pr.Name == "" {
			pr.Name = "#" + itoa(i)
		}
		pr.Src = prefixes(r.Src)
		pr.Dst = prefixes(r.Dst)
		for _, pp := range r.DstPorts {
			pr.DstPorts = append(pr.DstPorts, policy.PortRange(pp))
		}
		rs[i] = pr
	}
	return rs
}

func prefixes(ps []Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, p.Prefix)
	}
	return out
}

// Policy builds the uplink policy of the configuration with every uplink
// available: the static plan that `wanflow check` shows. The daemon derives
// live snapshots from it with (*policy.Policy).WithAvailability.
func (c *Config) Policy() (*policy.Policy, error) {
	return policy.New(c.PolicyUplinks(), c.Balance.Affinity, c.PolicyRules())
}
