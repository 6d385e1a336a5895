// Command wanflow is the multi-uplink edge router daemon and its tools.
//
//	wanflow run -c FILE      run the daemon
//	wanflow check -c FILE    validate a config and print what run would install
//	wanflow lab up|down      build or remove the network-namespace lab
//	wanflow demo             build the lab, run the router in it with live traffic, show a failover
//	wanflow bench            run the lab benchmarks against the kernel
package main

import (
	"fmt"
	"os"
)

const usage = `usage: wanflow <command> [flags]

commands:
  run -c FILE       run the router daemon (root)
  check -c FILE     validate a config file and print the plan
  lab up|down       build / remove the network-namespace lab (root)
  demo              build the lab, run wanflow in it with live traffic, fail an uplink over and back (root)
  bench             measure wanflow against the kernel in the lab (root)
  version           print the version
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
	case "lab":
		err = cmdLab(args)
	case "demo":
		err = cmdDemo(args)
	case "bench":
		err = cmdBench(args)
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
