module acr-credential-broker/kubelet-provider

go 1.26.0
