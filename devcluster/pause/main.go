// Command pause is the sandbox ("pause") container of the real node's pods: it holds
// the pod's namespaces, reaps the orphans of its PID namespace and exits on SIGINT or
// SIGTERM, as Kubernetes' own pause does. It is built static, into an image of its own
// (devcluster/realnode/images.py), because no registry is reachable to pull one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
