// Command wanflow is the multi-uplink edge router daemon and its tools.
//
//	wanflow run -c FILE      run the daemon
//	wanflow check -c FILE    validate a config and print what run would install
//	wanflow cleanup -c FILE  remove what a stopped wanflow left in the kernel
//	wanflow lab up|down      build or remove the network-namespace lab
//	wanflow demo             build the lab, run the router in it with live traffic, show a failover
//	wanflow bench            run the lab benchmarks against the kernel
//
// The client commands ask a running daemon through its control socket
// (-s PATH, -c FILE, $WANFLOW_SOCKET) and print tables, or JSON with --json:
//
//	wanflow status           uplinks, flows, DNS, DHCP and drops at a glance
//	wanflow uplinks          every uplink in detail, with its probes
//	wanflow flows            the flow table (filters: --uplink, --host, --proto...)
//	wanflow explain P S D    which uplink a flow uses and why
//	wanflow events [-f]      recent uplink events; -f follows them
//	wanflow reload           reload the config file
//	wanflow top              live throughput per uplink
package main

import (
	"fmt"
	"os"
)

const usage = `usage: wanflow <command> [flags]

commands:
  run -c FILE       run the router daemon (root)
  check -c FILE     validate a config file and print the plan
  cleanup -c FILE   remove what a stopped wanflow left in the kernel (root)
  lab up|down       build / remove the network-namespace lab (root)
  demo              build the lab, run wanflow in it with live traffic, fail an uplink over and back (root)
  bench             measure wanflow against the kernel in the lab (root)
  version           print the version

commands that ask a running daemon (flags: -s PATH control socket, default
$WANFLOW_SOCKET or /run/wanflow/wanflow.sock; -c FILE take it from a config;
--json print the API's JSON):
  status            uplinks, flows, DNS, DHCP and drops at a glance
  uplinks           every uplink in detail: addresses, DNS, failure actions, probes
  flows             the flow table [--uplink NAME] [--host ADDR] [--remote ADDR]
                    [--proto P] [--port N] [--sort bytes|packets|age] [--limit N]
  explain <proto> <src>[:port] <dst>[:port]
                    which uplink the flow uses and why
  events [-f] [--since N]
                    recent uplink events; -f follows new ones until interrupted
  reload            reload the config file and list what changed
  top [-i 1s] [-n N]
                    live throughput and flows per uplink

"wanflow <command> -h" describes a command's flags.
`

// version is set by the release build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args)
	case "check":
		err = cmdCheck(args)
	case "cleanup":
		err = cmdCleanup(args)
	case "lab":
		err = cmdLab(args)
	case "demo":
		err = cmdDemo(args)
	case "bench":
		err = cmdBench(args)
	case "status":
		err = cmdStatus(args)
	case "uplinks":
		err = cmdUplinks(args)
	case "flows":
		err = cmdFlows(args)
	case "explain":
		err = cmdExplain(args)
	case "events":
		err = cmdEvents(args)
	case "reload":
		err = cmdReload(args)
	case "top":
		err = cmdTop(args)
	case "version", "-v", "--version":
		fmt.Println("wanflow", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "wanflow: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wanflow:", err)
		os.Exit(1)
	}
}
