"""The real node of the test bed: a kubelet and kube-proxy from the control-plane
binary, Debian's containerd, runc and CNI plugins, and images built from the
project's own Dockerfiles.

`images` builds the images (a debootstrap base, then buildah); `runtime` configures
and starts containerd; `networking` makes the bridge that pods attach to;
`kubelet` starts the kubelet and kube-proxy. `devcluster.cluster` puts them
together when a test bed is started with a real node.
"""
