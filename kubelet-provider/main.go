// Command acr-credential-kubelet-provider is a kubelet image credential provider plugin
// (credentialprovider.kubelet.k8s.io/v1) backed by the acr-credential-broker. The kubelet runs it
// for each image it matches, with a CredentialProviderRequest on stdin carrying the pod's
// ServiceAccount token; the plugin forwards the token and the ServiceAccount annotations to the
// broker's POST /v1/kubelet-credentials and relays the broker's CredentialProviderResponse on
// stdout. The broker makes every decision (who gets which registry, for how long); the plugin only
// checks that what it relays is a complete response. On any failure it prints one line on stderr,
// nothing on stdout, and exits non-zero, so the kubelet never caches a partial or empty answer.
//
// Configuration, from the provider's args or env in the CredentialProviderConfig (flags win):
//
//	--broker-url URL   ACR_BROKER_URL      the broker, https (http only for a loopback host)
//	--ca-file FILE     ACR_BROKER_CA_FILE  PEM bundle to trust besides the system's
//	--timeout 10s      ACR_BROKER_TIMEOUT  the whole broker call
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const (
	apiVersion    = "credentialprovider.kubelet.k8s.io/v1"
	name          = "acr-credential-kubelet-provider"
	endpointPath  = "/v1/kubelet-credentials"
	maxInputBytes = 1 << 20
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

type request struct {
	APIVersion                string            `json:"apiVersion"`
	Kind                      string            `json:"kind"`
	Image                     string            `json:"image"`
	ServiceAccountToken       string            `json:"serviceAccountToken,omitempty"`
	ServiceAccountAnnotations map[string]string `json:"serviceAccountAnnotations,omitempty"`
}

type authConfig struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type response struct {
	APIVersion    string                `json:"apiVersion"`
	Kind          string                `json:"kind"`
	CacheKeyType  string                `json:"cacheKeyType"`
	CacheDuration string                `json:"cacheDuration"`
	Auth          map[string]authConfig `json:"auth"`
}

type config struct {
	brokerURL *url.URL
	caFile    string
	timeout   time.Duration
}

// usageError is a configuration mistake (exit 2), as opposed to a failed lookup (exit 1).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func envOr(value, key string) string {
	if value != "" {
		return value
	}
	return os.Getenv(key)
}

func parseConfig(args []string) (config, error) {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	brokerURL := flags.String("broker-url", "", "")
	caFile := flags.String("ca-file", "", "")
	timeout := flags.String("timeout", "", "")
	showVersion := flags.Bool("version", false, "")
	if err := flags.Parse(args); err != nil {
		return config{}, usagef("%v; the flags are --broker-url, --ca-file, --timeout", err)
	}
	if *showVersion {
		fmt.Println(name, version)
		os.Exit(0)
	}
	if flags.NArg() > 0 {
		return config{}, usagef("unexpected argument %q; the flags are --broker-url, --ca-file, --timeout", flags.Arg(0))
	}
	cfg := config{caFile: envOr(*caFile, "ACR_BROKER_CA_FILE"), timeout: 10 * time.Second}
	raw := envOr(*brokerURL, "ACR_BROKER_URL")
	if raw == "" {
		return config{}, usagef("no broker URL; set --broker-url or ACR_BROKER_URL in the provider's args or env of the CredentialProviderConfig")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return config{}, usagef("broker URL %q is not an https URL (http only for 127.0.0.1 or localhost); fix --broker-url or ACR_BROKER_URL", raw)
	}
	cfg.brokerURL = u
	if t := envOr(*timeout, "ACR_BROKER_TIMEOUT"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > 55*time.Second {
			return config{}, usagef("timeout %q is not a duration between 0s and 55s (the kubelet gives a plugin one minute); fix --timeout or ACR_BROKER_TIMEOUT", t)
		}
		cfg.timeout = d
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func readRequest(in io.Reader) (request, error) {
	data, err := io.ReadAll(io.LimitReader(in, maxInputBytes+1))
	if err != nil {
		return request{}, fmt.Errorf("cannot read the CredentialProviderRequest on stdin: %v", err)
	}
	if len(data) > maxInputBytes {
		return request{}, fmt.Errorf("the CredentialProviderRequest on stdin is larger than %d bytes", maxInputBytes)
	}
	var req request
	if err := json.Unmarshal(data, &req); err != nil {
		return request{}, fmt.Errorf("stdin is not a CredentialProviderRequest (invalid JSON); this program is run by the kubelet")
	}
	if req.APIVersion != apiVersion || req.Kind != "CredentialProviderRequest" {
		return request{}, fmt.Errorf("stdin is %s %s, expected %s CredentialProviderRequest; set apiVersion: %s for this provider in the CredentialProviderConfig", req.APIVersion, req.Kind, apiVersion, apiVersion)
	}
	if req.Image == "" {
		return request{}, errors.New("the CredentialProviderRequest names no image")
	}
	if req.ServiceAccountToken == "" {
		return request{}, errors.New("the CredentialProviderRequest carries no ServiceAccount token; set tokenAttributes (serviceAccountTokenAudience, requireServiceAccount: true) for this provider in the CredentialProviderConfig")
	}
	return req, nil
}

func httpClient(cfg config) (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = http.ProxyFromEnvironment
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return nil, usagef("cannot read the CA file: %v; fix --ca-file or ACR_BROKER_CA_FILE", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("the CA file %s holds no PEM certificate; fix --ca-file or ACR_BROKER_CA_FILE", cfg.caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: transport, Timeout: cfg.timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// brokerError is the broker's {"error":{"code","message"}}.
type brokerError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func askBroker(cfg config, req request) (response, error) {
	client, err := httpClient(cfg)
	if err != nil {
		return response{}, err
	}
	body, _ := json.Marshal(map[string]any{"image": req.Image, "serviceAccountAnnotations": nonNil(req.ServiceAccountAnnotations)})
	endpoint := strings.TrimSuffix(cfg.brokerURL.String(), "/") + endpointPath
	httpReq, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return response{}, usagef("cannot build a request to %s: %v", endpoint, err)
	}
	httpReq.Header.Set("Authorization", "Bearer "+req.ServiceAccountToken)
	httpReq.Header.Set("Content-Type", "application/json")
	httpReq.Header.Set("User-Agent", name+"/"+version)
	httpResp, err := client.Do(httpReq)
	if err != nil {
		return response{}, fmt.Errorf("broker unreachable at %s: %v", cfg.brokerURL.Host, unwrapURLError(err))
	}
	defer httpResp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(httpResp.Body, maxInputBytes))
	if err != nil {
		return response{}, fmt.Errorf("broker at %s: cannot read the answer: %v", cfg.brokerURL.Host, unwrapURLError(err))
	}
	if httpResp.StatusCode != http.StatusOK {
		var refusal brokerError
		if json.Unmarshal(data, &refusal) == nil && refusal.Error.Code != "" {
			return response{}, fmt.Errorf("broker refused %s (%d %s): %s", req.Image, httpResp.StatusCode, refusal.Error.Code, oneLine(refusal.Error.Message))
		}
		return response{}, fmt.Errorf("broker at %s answered HTTP %d without a broker error; check --broker-url", cfg.brokerURL.Host, httpResp.StatusCode)
	}
	return checkResponse(data)
}

// checkResponse accepts only a complete answer: the kubelet would cache anything it is given.
func checkResponse(data []byte) (response, error) {
	// Fields it does not know are dropped, not refused: only the ones below reach the kubelet.
	var resp response
	if err := json.Unmarshal(data, &resp); err != nil {
		return response{}, errors.New("the broker's answer is not a CredentialProviderResponse; check --broker-url and the broker's version")
	}
	if resp.APIVersion != apiVersion || resp.Kind != "CredentialProviderResponse" || resp.CacheKeyType != "Registry" {
		return response{}, fmt.Errorf("the broker answered %s %s with cacheKeyType %q, expected %s CredentialProviderResponse with Registry", resp.APIVersion, resp.Kind, resp.CacheKeyType, apiVersion)
	}
	if d, err := time.ParseDuration(resp.CacheDuration); err != nil || d < 0 {
		return response{}, fmt.Errorf("the broker's cacheDuration %q is not a duration", resp.CacheDuration)
	}
	if len(resp.Auth) == 0 {
		return response{}, errors.New("the broker's answer holds no credential")
	}
	for match, auth := range resp.Auth {
		if match == "" || auth.Username == "" || auth.Password == "" {
			return response{}, errors.New("the broker's answer holds an incomplete credential")
		}
	}
	return resp, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func unwrapURLError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	req, err := readRequest(stdin)
	if err != nil {
		return err
	}
	resp, err := askBroker(cfg, req)
	if err != nil {
		return err
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	// One write of the whole answer: the kubelet reads stdout only after the plugin exits.
	_, err = stdout.Write(append(out, '\n'))
	return err
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", name, oneLine(err.Error()))
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
