// Command controlplane is one binary holding the four control-plane programs of the
// Durakube test bed: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, chosen by the first argument (as busybox does). One binary links
// the large shared Kubernetes code once, which halves the first build on a fresh
// machine.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]")
		os.Exit(2)
	}
	program, args := os.Args[1], os.Args[2:]
	// Each program parses os.Args itself; present it as if it had been started alone.
	os.Args = append([]string{program}, args...)
	switch program {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown program %q\n", program)
		os.Exit(2)
	}
}
