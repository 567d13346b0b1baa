# Sourced by hack/lab/multi.sh (and readable by tests: internal/multilab mirrors these names).
# The multi-node lab: kubeadm nodes on this machine, each in its own network, mount and UTS
# namespaces, on one L2 segment (a bridge in a namespace of its own that forwards nothing),
# with haproxy in front of the control-plane nodes. All names and addresses are overridable.
ML_DIR=${ML_DIR:-/var/lib/certctl-multi}          # per-node files, logs, pids, images
ML_RUN=${ML_RUN:-/run/certctl-multi}              # mount/UTS namespace holders
ML_PREFIX=${ML_PREFIX:-cml}                       # netns names: cml-br, cml-lb, cml-client, cml-<node>
ML_SUBNET_PREFIX=10.2.1                           # the nodes' /24
ML_GW=$ML_SUBNET_PREFIX.1                         # on the bridge; forwards nothing
ML_LB_IP=${ML_LB_IP:-$ML_SUBNET_PREFIX.139}       # haproxy (the field's HAProxy address)
ML_SVC_IP=10.96.0.1                                # the kubernetes Service (kubeadm's default service subnet)
ML_CLIENT_IP=${ML_CLIENT_IP:-$ML_SUBNET_PREFIX.140} # an operator's workstation: tests run here
ML_CLUSTER=${ML_CLUSTER:-certctl-multi}
# The nodes `up` makes: name=ip=role (cp: control plane, w: worker). The first one runs kubeadm init.
ML_NODES=${ML_NODES:-"cp1=$ML_SUBNET_PREFIX.151=cp cp2=$ML_SUBNET_PREFIX.152=cp cp3=$ML_SUBNET_PREFIX.153=cp worker1=$ML_SUBNET_PREFIX.154=w"}
ML_IMAGE=${ML_IMAGE:-localhost/certctl:dev}       # the certctl image imported into every node
