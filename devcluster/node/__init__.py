"""The process node: a kubelet stand-in that runs pod containers as local processes."""
