// Command keyring runs the kubelet's own image credential provider code
// (k8s.io/kubernetes/pkg/credentialprovider/plugin) against a real kube-apiserver, the way the
// kubelet does before pulling a pod's image: it reads the CredentialProviderConfig, asks the
// apiserver for the pod's ServiceAccount and a token for the provider's audience bound to the pod,
// executes the plugin and looks the image up in the resulting keyring.
//
//	keyring --config FILE --bin-dir DIR --kubeconfig FILE [namespace/pod=image ...]
//
// Without lookups it only loads and validates the configuration as the kubelet does at start.
// Each lookup prints one JSON line {"lookup": "...", "credentials": [{"username", "password"}]};
// the lookups run in order in one process, so the kubelet's credential cache is shared between
// them. The kubelet logs plugin failures (and returns no credential); they go to stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"
)

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type result struct {
	Lookup      string       `json:"lookup"`
	Credentials []credential `json:"credentials"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "keyring: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	klog.InitFlags(nil)
	configPath := flag.String("config", "", "the CredentialProviderConfig file (--image-credential-provider-config)")
	binDir := flag.String("bin-dir", "", "the plugin folder (--image-credential-provider-bin-dir)")
	kubeconfig := flag.String("kubeconfig", "", "credentials the kubelet uses towards the apiserver")
	flag.Parse()
	if *configPath == "" || *binDir == "" || *kubeconfig == "" {
		fail("usage: keyring --config FILE --bin-dir DIR --kubeconfig FILE [namespace/pod=image ...]")
	}

	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("cannot read %s: %v", *kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		fail("cannot build a client: %v", err)
	}
	ctx := context.Background()
	getToken := func(namespace, name string, request *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		return client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, request, metav1.CreateOptions{})
	}
	getServiceAccount := func(namespace, name string) (*v1.ServiceAccount, error) {
		return client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err := plugin.RegisterCredentialProviderPlugins(*configPath, *binDir, getToken, getServiceAccount); err != nil {
		fail("%v", err)
	}

	out := json.NewEncoder(os.Stdout)
	for _, lookup := range flag.Args() {
		podRef, image, ok := strings.Cut(lookup, "=")
		namespace, podName, ok2 := strings.Cut(podRef, "/")
		if !ok || !ok2 {
			fail("%q is not namespace/pod=image", lookup)
		}
		pod, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			fail("cannot read pod %s: %v", podRef, err)
		}
		keyring := plugin.NewExternalCredentialProviderDockerKeyring(namespace, podName, string(pod.UID), pod.Spec.ServiceAccountName)
		found, _ := keyring.Lookup(image)
		r := result{Lookup: lookup, Credentials: []credential{}}
		for _, c := range found {
			r.Credentials = append(r.Credentials, credential{Username: c.Username, Password: c.Password})
		}
		if err := out.Encode(r); err != nil {
			fail("%v", err)
		}
	}
}
