package main

// Tests of what ships next to the binary: the Kubernetes manifests in
// deploy/kubernetes and the Dockerfile. The manifests are never applied
// here (there is no cluster); instead every Portcullis config in them must
// pass "portcullis check", and everything the pods, Services and Ingresses
// say about ports, probes, mounts and Secrets must agree with that config.

import (
	"bytes"
	"cmp"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portcullis-proxy/portcullis/proxy/server"
)

const (
	// k8sDir is deploy/kubernetes seen from this package's directory,
	// where go test runs.
	k8sDir = "../../deploy/kubernetes"
	// k8sImage is the repository of the Portcullis image; a container
	// running it is "the Portcullis container".
	k8sImage = "ghcr.io/portcullis-proxy/portcullis"
	// k8sUID is distroless's nonroot user, which the Dockerfile's final
	// stage and every Portcullis container run as.
	k8sUID = 65532
)

// k8sFiles are the manifests the README promises; more may be added.
var k8sFiles = []string{"sidecar.yaml", "standalone.yaml", "ingress-nginx.yaml"}

// k8sDoc is one manifest document, with only the fields these tests read.
type k8sDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`

	file string // base name of the file it came from
	num  int    // position in the file, from 1
}

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (d *k8sDoc) String() string {
	return fmt.Sprintf("%s: %s %s", d.file, d.Kind, k8sKey(d.Metadata.Namespace, d.Metadata.Name))
}

func k8sKey(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

type k8sDeploymentSpec struct {
	Replicas *int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata k8sMeta    `yaml:"metadata"`
		Spec     k8sPodSpec `yaml:"spec"`
	} `yaml:"template"`
}

type k8sPodSpec struct {
	Containers                    []k8sContainer `yaml:"containers"`
	InitContainers                []k8sContainer `yaml:"initContainers"`
	Volumes                       []k8sVolume    `yaml:"volumes"`
	SecurityContext               k8sSecurity    `yaml:"securityContext"`
	TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
	HostNetwork                   bool           `yaml:"hostNetwork"`
}

type k8sContainer struct {
	Name            string       `yaml:"name"`
	Image           string       `yaml:"image"`
	Command         []string     `yaml:"command"`
	Args            []string     `yaml:"args"`
	Ports           []k8sPort    `yaml:"ports"`
	Env             []k8sEnv     `yaml:"env"`
	VolumeMounts    []k8sMount   `yaml:"volumeMounts"`
	LivenessProbe   *k8sProbe    `yaml:"livenessProbe"`
	ReadinessProbe  *k8sProbe    `yaml:"readinessProbe"`
	Resources       k8sResources `yaml:"resources"`
	SecurityContext *k8sSecurity `yaml:"securityContext"`
}

type k8sPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type k8sEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type k8sResources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

type k8sSecurity struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
}

type k8sVolume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string         `yaml:"secretName"`
		Items      []k8sKeyToPath `yaml:"items"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name  string         `yaml:"name"`
		Items []k8sKeyToPath `yaml:"items"`
	} `yaml:"configMap"`
}

type k8sKeyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type k8sIngressTLS struct {
	Hosts []string `yaml:"hosts"`
}

type k8sServiceSpec struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []k8sServicePort  `yaml:"ports"`
}

type k8sServicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"` // a number or a port name; default: Port
}

type k8sIngressSpec struct {
	IngressClassName string          `yaml:"ingressClassName"`
	TLS              []k8sIngressTLS `yaml:"tls"`
	Rules            []struct {
		Host string `yaml:"host"`
		HTTP struct {
			Paths []struct {
				Path     string `yaml:"path"`
				PathType string `yaml:"pathType"`
				Backend  struct {
					Service struct {
						Name string `yaml:"name"`
						Port struct {
							Number int    `yaml:"number"`
							Name   string `yaml:"name"`
						} `yaml:"port"`
					} `yaml:"service"`
				} `yaml:"backend"`
			} `yaml:"paths"`
		} `yaml:"http"`
	} `yaml:"rules"`
}

// deployConfig is the part of a Portcullis config these tests compare the
// manifests with. "portcullis check" validates the whole file.
type deployConfig struct {
	Server struct {
		Listen         string   `yaml:"listen"`
		PublicURL      string   `yaml:"public_url"`
		MetricsListen  string   `yaml:"metrics_listen"`
		TrustedProxies []string `yaml:"trusted_proxies"`
		TLS            struct {
			CertFile string `yaml:"cert_file"`
			KeyFile  string `yaml:"key_file"`
		} `yaml:"tls"`
		Timeouts struct {
			Shutdown string `yaml:"shutdown"`
		} `yaml:"timeouts"`
	} `yaml:"server"`
	Session struct {
		Secrets     []string `yaml:"secrets"`
		SecretsFile string   `yaml:"secrets_file"`
		Store       struct {
			URL string `yaml:"url"`
		} `yaml:"store"`
	} `yaml:"session"`
	Login struct {
		Issuer           string `yaml:"issuer"`
		ClientSecretFile string `yaml:"client_secret_file"`
	} `yaml:"login"`
	Issuer struct {
		UsersFile string `yaml:"users_file"`
		Clients   []struct {
			SecretFile string `yaml:"secret_file"`
		} `yaml:"clients"`
		Storage struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"storage"`
	} `yaml:"issuer"`
	Upstreams []deployUpstream `yaml:"upstreams"`
}

type deployUpstream struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	URL  string `yaml:"url"`
}

// deployFile is one *_file key of the config; secret says whether the file
// holds a secret (and so must come from a Secret).
type deployFile struct {
	key, path string
	secret    bool
}

// configFiles lists the config's *_file keys that are set.
func (c *deployConfig) configFiles() []deployFile {
	type f = deployFile
	all := []f{
		{"session.secrets_file", c.Session.SecretsFile, true},
		{"login.client_secret_file", c.Login.ClientSecretFile, true},
		{"issuer.users_file", c.Issuer.UsersFile, true},
		{"server.tls.cert_file", c.Server.TLS.CertFile, false},
		{"server.tls.key_file", c.Server.TLS.KeyFile, true},
	}
	for i, cl := range c.Issuer.Clients {
		all = append(all, f{fmt.Sprintf("issuer.clients[%d].secret_file", i), cl.SecretFile, true})
	}
	return slices.DeleteFunc(all, func(x f) bool { return x.path == "" })
}

// k8sSet is every manifest document of deploy/kubernetes.
type k8sSet struct {
	docs []*k8sDoc
	text map[string]string // file -> contents
}

func loadK8s(t *testing.T) *k8sSet {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	set := &k8sSet{text: map[string]string{}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		set.text[base] = string(raw)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for n := 1; ; n++ {
			var node yaml.Node
			err := dec.Decode(&node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", base, n, err)
			}
			if len(node.Content) == 0 || node.Content[0].Kind != yaml.MappingNode {
				t.Fatalf("%s: document %d is empty or not a mapping (a stray \"---\"?)", base, n)
			}
			d := &k8sDoc{file: base, num: n}
			if err := node.Decode(d); err != nil {
				t.Fatalf("%s: document %d: %v", base, n, err)
			}
			set.docs = append(set.docs, d)
		}
	}
	for _, want := range k8sFiles {
		if _, ok := set.text[want]; !ok {
			t.Errorf("%s/%s is missing", k8sDir, want)
		}
	}
	if len(set.docs) == 0 {
		t.Fatalf("no manifests found in %s", k8sDir)
	}
	return set
}

func (s *k8sSet) kind(kind string) []*k8sDoc {
	var out []*k8sDoc
	for _, d := range s.docs {
		if d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

func (s *k8sSet) find(kind, ns, name string) *k8sDoc {
	for _, d := range s.docs {
		if d.Kind == kind && d.Metadata.Namespace == ns && d.Metadata.Name == name {
			return d
		}
	}
	return nil
}

func k8sDecodeSpec[T any](t *testing.T, d *k8sDoc) *T {
	t.Helper()
	var v T
	if err := d.Spec.Decode(&v); err != nil {
		t.Fatalf("%v: spec: %v", d, err)
	}
	return &v
}

// k8sWorkload is a Deployment with its pod and, when it runs Portcullis,
// the Portcullis container and its config.
type k8sWorkload struct {
	doc  *k8sDoc
	spec *k8sDeploymentSpec
	pod  *k8sPodSpec

	portcullis *k8sContainer // nil when the pod does not run Portcullis
	configMap  *k8sDoc       // where its config comes from
	configKey  string
	configText string
	config     *deployConfig
}

func k8sIsPortcullis(c *k8sContainer) bool {
	return strings.HasPrefix(c.Image, k8sImage+":") || strings.HasPrefix(c.Image, k8sImage+"@")
}

// workloads decodes every Deployment and resolves each Portcullis
// container's -config file to its ConfigMap key, failing the test when
// that cannot be done.
func (s *k8sSet) workloads(t *testing.T) []*k8sWorkload {
	t.Helper()
	var out []*k8sWorkload
	for _, d := range s.kind("Deployment") {
		w := &k8sWorkload{doc: d, spec: k8sDecodeSpec[k8sDeploymentSpec](t, d)}
		w.pod = &w.spec.Template.Spec
		for i := range w.pod.Containers {
			c := &w.pod.Containers[i]
			if !k8sIsPortcullis(c) {
				continue
			}
			if w.portcullis != nil {
				t.Fatalf("%v: two Portcullis containers (%q and %q)", d, w.portcullis.Name, c.Name)
			}
			w.portcullis = c
		}
		if w.portcullis != nil {
			s.resolveConfig(t, w)
		}
		out = append(out, w)
	}
	return out
}

func (s *k8sSet) resolveConfig(t *testing.T, w *k8sWorkload) {
	t.Helper()
	c := w.portcullis
	i := slices.Index(c.Args, "-config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("%v: container %q: args %q have no \"-config FILE\"", w.doc, c.Name, c.Args)
	}
	file := c.Args[i+1]
	vol, key, err := k8sMountedFile(w.pod, c, file)
	if err != nil {
		t.Fatalf("%v: container %q: -config %s: %v", w.doc, c.Name, file, err)
	}
	if vol.ConfigMap == nil {
		t.Fatalf("%v: container %q: -config %s: volume %q is not a ConfigMap", w.doc, c.Name, file, vol.Name)
	}
	cm := s.find("ConfigMap", w.doc.Metadata.Namespace, vol.ConfigMap.Name)
	if cm == nil || cm.file != w.doc.file {
		t.Fatalf("%v: -config %s: ConfigMap %s not found in %s", w.doc, file, k8sKey(w.doc.Metadata.Namespace, vol.ConfigMap.Name), w.doc.file)
	}
	text, ok := cm.Data[key]
	if !ok {
		t.Fatalf("%v: -config %s: %v has no key %q", w.doc, file, cm, key)
	}
	var cfg deployConfig
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("%v: key %q: %v", cm, key, err)
	}
	w.configMap, w.configKey, w.configText, w.config = cm, key, text, &cfg
}

// mountedFile tells which volume, and which key in it, provides file in
// container c.
func k8sMountedFile(pod *k8sPodSpec, c *k8sContainer, file string) (*k8sVolume, string, error) {
	var mount *k8sMount
	var key string
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if m.SubPath != "" {
			if m.MountPath == file {
				mount, key = m, m.SubPath
			}
			continue
		}
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if ok && (mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount, key = m, rel
		}
	}
	if mount == nil {
		return nil, "", errors.New("not under any volumeMount")
	}
	i := slices.IndexFunc(pod.Volumes, func(v k8sVolume) bool { return v.Name == mount.Name })
	if i < 0 {
		return nil, "", fmt.Errorf("volumeMount %q names no volume", mount.Name)
	}
	v := &pod.Volumes[i]
	var items []k8sKeyToPath
	switch {
	case v.Secret != nil:
		items = v.Secret.Items
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
	}
	if len(items) > 0 && mount.SubPath == "" {
		j := slices.IndexFunc(items, func(it k8sKeyToPath) bool { return it.Path == key })
		if j < 0 {
			return nil, "", fmt.Errorf("volume %q lists items, none with path %q", v.Name, key)
		}
		key = items[j].Key
	}
	return v, key, nil
}

// port resolves a probe's or Service's port (a number or a port name)
// against the ports the pod's containers declare.
func (pod *k8sPodSpec) port(ref string) (int, bool) {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == ref || strconv.Itoa(p.ContainerPort) == ref {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func k8sAddrPort(t *testing.T, key, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q: %v", key, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %q: port is not a number", key, addr)
	}
	return n
}

func (w *k8sWorkload) listenPort(t *testing.T) int {
	return k8sAddrPort(t, "server.listen", cmp.Or(w.config.Server.Listen, server.DefaultListen))
}

func k8sSelects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifestsParse(t *testing.T) {
	s := loadK8s(t)
	seen := map[string]*k8sDoc{}
	for _, d := range s.docs {
		if d.APIVersion == "" || d.Kind == "" || d.Metadata.Name == "" {
			t.Errorf("%s: document %d: apiVersion %q, kind %q, metadata.name %q: want all three set",
				d.file, d.num, d.APIVersion, d.Kind, d.Metadata.Name)
			continue
		}
		// The README says the files can be applied side by side.
		id := d.Kind + " " + k8sKey(d.Metadata.Namespace, d.Metadata.Name)
		if prev, dup := seen[id]; dup {
			t.Errorf("%s: document %d: %s is also defined in %s (document %d)", d.file, d.num, id, prev.file, prev.num)
		}
		seen[id] = d
	}
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for f := range s.text {
		if !bytes.Contains(readme, []byte("`"+f+"`")) {
			t.Errorf("deploy/kubernetes/README.md does not mention %s", f)
		}
	}
}

func TestKubernetesDeployments(t *testing.T) {
	s := loadK8s(t)
	ws := s.workloads(t)
	nPortcullis := 0
	for _, w := range ws {
		t.Run(w.doc.file+"/"+w.doc.Metadata.Name, func(t *testing.T) {
			k8sCheckPod(t, w)
			if w.portcullis != nil {
				nPortcullis++
				k8sCheckPortcullis(t, s, w)
			}
		})
	}
	if nPortcullis < 2 {
		t.Errorf("found %d Deployments running %s, want at least 2 (sidecar and standalone)", nPortcullis, k8sImage)
	}
}

// k8sCheckPod checks what every Deployment here must have, whatever it runs.
func k8sCheckPod(t *testing.T, w *k8sWorkload) {
	sel := w.spec.Selector.MatchLabels
	if len(sel) == 0 || !k8sSelects(sel, w.spec.Template.Metadata.Labels) {
		t.Errorf("selector.matchLabels %v do not select the template's labels %v", sel, w.spec.Template.Metadata.Labels)
	}
	if w.pod.HostNetwork {
		t.Errorf("hostNetwork: true; want the pod's own network namespace")
	}
	if len(w.pod.Containers) == 0 {
		t.Fatalf("no containers")
	}
	names := map[string]bool{}
	for _, c := range slices.Concat(w.pod.InitContainers, w.pod.Containers) {
		if c.Name == "" {
			t.Errorf("container with image %q has no name", c.Image)
		}
		if names[c.Name] {
			t.Errorf("container name %q used twice", c.Name)
		}
		names[c.Name] = true
		if _, tag, ok := strings.Cut(path.Base(c.Image), ":"); (!ok || tag == "") && !strings.Contains(c.Image, "@") {
			t.Errorf("container %q: image %q has no tag", c.Name, c.Image)
		}
		for _, kind := range []string{"requests", "limits"} {
			m := c.Resources.Requests
			if kind == "limits" {
				m = c.Resources.Limits
			}
			for _, r := range []string{"cpu", "memory"} {
				if m[r] == "" {
					t.Errorf("container %q: resources.%s.%s not set", c.Name, kind, r)
				}
			}
		}
		k8sCheckHardened(t, c, w.pod.SecurityContext)
		for _, m := range c.VolumeMounts {
			if !slices.ContainsFunc(w.pod.Volumes, func(v k8sVolume) bool { return v.Name == m.Name }) {
				t.Errorf("container %q: volumeMount %q names no volume", c.Name, m.Name)
			}
		}
	}
}

// k8sCheckHardened checks the container's effective security settings: the
// container's own, else the pod's where Kubernetes allows that.
func k8sCheckHardened(t *testing.T, c k8sContainer, pod k8sSecurity) {
	sc := k8sSecurity{}
	if c.SecurityContext != nil {
		sc = *c.SecurityContext
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = pod.RunAsUser
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("container %q: runAsNonRoot is not true", c.Name)
	}
	if uid != nil && *uid == 0 {
		t.Errorf("container %q: runAsUser 0", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %q: securityContext.readOnlyRootFilesystem is not true", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %q: securityContext.allowPrivilegeEscalation is not false", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container %q: privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container %q: securityContext.capabilities = %+v, want drop [ALL] and no add", c.Name, sc.Capabilities)
	}
}

// k8sCheckPortcullis checks the Portcullis container of w against its
// config.
func k8sCheckPortcullis(t *testing.T, s *k8sSet, w *k8sWorkload) {
	c := w.portcullis
	// Explicit on the container, so that it holds whatever the pod says.
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("container %q: no securityContext", c.Name)
	case sc.RunAsUser == nil || *sc.RunAsUser != k8sUID:
		t.Errorf("container %q: securityContext.runAsUser = %v, want %d", c.Name, k8sDeref(sc.RunAsUser), k8sUID)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("container %q: securityContext.runAsNonRoot is not true", c.Name)
	}
	if len(c.Command) > 0 {
		t.Errorf("container %q: command %q replaces the image's entrypoint; set args only", c.Name, c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("container %q: args = %q, want \"serve\", \"-config\", FILE", c.Name, c.Args)
	}
	k8sCheckPorts(t, w)
	k8sCheckShutdown(t, w)
	k8sCheckMounts(t, w)
	k8sCheckEnvAndStores(t, s, w)
	k8sCheckLoopbackUpstreams(t, w)
}

// k8sCheckPorts: the main listener and the metrics listener are declared,
// and the probes ask the metrics listener.
func k8sCheckPorts(t *testing.T, w *k8sWorkload) {
	c, cfg := w.portcullis, w.config
	listen := w.listenPort(t)
	if _, ok := w.pod.port(strconv.Itoa(listen)); !ok {
		t.Errorf("server.listen %q: no containerPort %d declared", cfg.Server.Listen, listen)
	}
	if cfg.Server.MetricsListen == "" {
		t.Fatalf("server.metrics_listen is not set: the probes need /healthz and /readyz")
	}
	metrics := k8sAddrPort(t, "server.metrics_listen", cfg.Server.MetricsListen)
	if h, _, _ := net.SplitHostPort(cfg.Server.MetricsListen); h != "" && h != "0.0.0.0" && h != "::" {
		t.Errorf("server.metrics_listen %q: the kubelet probes the pod IP, want host 0.0.0.0 or empty", cfg.Server.MetricsListen)
	}
	if _, ok := w.pod.port(strconv.Itoa(metrics)); !ok {
		t.Errorf("server.metrics_listen %q: no containerPort %d declared", cfg.Server.MetricsListen, metrics)
	}
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %q: %s: want httpGet %s on the metrics port", c.Name, p.name, p.path)
			continue
		}
		if got := p.probe.HTTPGet.Path; got != p.path {
			t.Errorf("container %q: %s.httpGet.path = %q, want %q", c.Name, p.name, got, p.path)
		}
		if got, ok := w.pod.port(p.probe.HTTPGet.Port); !ok || got != metrics {
			t.Errorf("container %q: %s.httpGet.port %q = %d, want the metrics port %d", c.Name, p.name, p.probe.HTTPGet.Port, got, metrics)
		}
	}
	if a, ok := w.spec.Template.Metadata.Annotations["prometheus.io/port"]; ok && a != strconv.Itoa(metrics) {
		t.Errorf("annotation prometheus.io/port = %q, want %d", a, metrics)
	}
}

func k8sCheckShutdown(t *testing.T, w *k8sWorkload) {
	cfg := w.config
	// SIGTERM drains for up to server.timeouts.shutdown; the kubelet must
	// wait longer before it kills.
	shutdown := server.DefaultShutdownTimeout
	if cfg.Server.Timeouts.Shutdown != "" {
		d, err := time.ParseDuration(cfg.Server.Timeouts.Shutdown)
		if err != nil {
			t.Fatalf("server.timeouts.shutdown: %v", err)
		}
		shutdown = d
	}
	grace := 30 * time.Second // Kubernetes's default
	if g := w.pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than server.timeouts.shutdown (%v)", grace, shutdown)
	}
}

func k8sCheckMounts(t *testing.T, w *k8sWorkload) {
	c, cfg := w.portcullis, w.config
	// Mounts: read-only, and none inside another (a mount inside a
	// ConfigMap or Secret volume fights with its atomic updates).
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("container %q: volumeMount %q at %s is not readOnly", c.Name, m.Name, m.MountPath)
		}
		for _, o := range c.VolumeMounts {
			if o.Name != m.Name && strings.HasPrefix(m.MountPath, strings.TrimSuffix(o.MountPath, "/")+"/") {
				t.Errorf("container %q: volumeMount %s is inside volumeMount %s", c.Name, m.MountPath, o.MountPath)
			}
		}
	}

	// Every *_file is mounted, secrets from a Secret volume.
	for _, f := range cfg.configFiles() {
		v, _, err := k8sMountedFile(w.pod, c, f.path)
		switch {
		case err != nil:
			t.Errorf("%s %s: %v", f.key, f.path, err)
		case f.secret && v.Secret == nil:
			t.Errorf("%s %s: volume %q is not a Secret", f.key, f.path, v.Name)
		}
	}
	if len(cfg.Session.Secrets) == 0 && cfg.Session.SecretsFile == "" {
		t.Errorf("no session.secrets_file (or secrets): each process would generate its own and sign everyone out at every restart")
	}
}

func k8sCheckEnvAndStores(t *testing.T, s *k8sSet, w *k8sWorkload) {
	c, cfg := w.portcullis, w.config
	// Every ${VAR} of the config is set in the container's environment.
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, v := range k8sConfigVars(w.configText) {
		if !env[v] {
			t.Errorf("the config uses ${%s}, but container %q has no env %s", v, c.Name, v)
		}
	}

	// Store URLs inside the cluster name a Service of these manifests
	// and one of its ports.
	for _, u := range []struct{ key, url string }{
		{"session.store.url", cfg.Session.Store.URL},
		{"issuer.storage.url", cfg.Issuer.Storage.URL},
	} {
		if u.url == "" {
			continue
		}
		pu, err := url.Parse(k8sVarRef.ReplaceAllString(u.url, "${1}x"))
		if err != nil {
			t.Errorf("%s: %v", u.key, err)
			continue
		}
		name, ns := pu.Hostname(), w.doc.Metadata.Namespace
		if n, rest, dotted := strings.Cut(name, "."); dotted {
			nsPart, suffix, _ := strings.Cut(rest, ".")
			if suffix != "svc" && suffix != "svc.cluster.local" {
				continue // outside the cluster
			}
			name, ns = n, nsPart
		}
		svc := s.find("Service", ns, name)
		if svc == nil {
			t.Errorf("%s host %q: no Service %s in %s", u.key, pu.Hostname(), k8sKey(ns, name), k8sDir)
			continue
		}
		port := cmp.Or(pu.Port(), "6379")
		if !slices.ContainsFunc(k8sDecodeSpec[k8sServiceSpec](t, svc).Ports, func(sp k8sServicePort) bool { return strconv.Itoa(sp.Port) == port }) {
			t.Errorf("%s port %s: not a port of %v", u.key, port, svc)
		}
	}

	// Replicas share the issuer's codes, refresh tokens and keys only
	// through a shared store.
	builtin := cfg.Login.Issuer == "" || cfg.Login.Issuer == "builtin"
	if r := w.spec.Replicas; r != nil && *r > 1 && builtin && cfg.Issuer.Storage.Type != "redis" {
		t.Errorf("replicas %d with the built-in issuer, issuer.storage.type %q: want redis, shared by the replicas", *r, cfg.Issuer.Storage.Type)
	}
}

// k8sCheckLoopbackUpstreams: a loopback upstream is another container of
// this pod; that container must listen on loopback only and expose nothing.
func k8sCheckLoopbackUpstreams(t *testing.T, w *k8sWorkload) {
	c, cfg := w.portcullis, w.config
	for i, u := range cfg.Upstreams {
		pu, err := url.Parse(u.URL)
		if err != nil || !slices.Contains([]string{"127.0.0.1", "localhost", "::1"}, pu.Hostname()) {
			continue
		}
		addr := pu.Host
		bound := false
		for _, o := range w.pod.Containers {
			if o.Name == c.Name {
				continue
			}
			if len(o.Ports) > 0 {
				t.Errorf("upstreams[%d] %q is in the pod, but container %q declares ports %v: only Portcullis should be reachable", i, u.URL, o.Name, o.Ports)
			}
			for _, v := range slices.Concat(o.Command, o.Args, k8sEnvValues(o.Env)) {
				bound = bound || strings.Contains(v, addr)
			}
		}
		if !bound {
			t.Errorf("upstreams[%d] %q: no other container is told to listen on %s", i, u.URL, addr)
		}
	}
}

func k8sDeref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func k8sEnvValues(env []k8sEnv) []string {
	var out []string
	for _, e := range env {
		out = append(out, e.Value)
	}
	return out
}

// k8sVarRef is ${NAME} not preceded by another $ ($${NAME} is literal).
var k8sVarRef = regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func k8sConfigVars(text string) []string {
	var out []string
	for _, m := range k8sVarRef.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(out, m[2]) {
			out = append(out, m[2])
		}
	}
	return out
}

// TestKubernetesConfigsPassCheck runs "portcullis check" on every config
// shipped in a ConfigMap, with the environment the container would have.
func TestKubernetesConfigsPassCheck(t *testing.T) {
	s := loadK8s(t)
	ws := s.workloads(t)
	n := 0
	for _, cm := range s.kind("ConfigMap") {
		text, ok := cm.Data["portcullis.yaml"]
		if !ok {
			continue
		}
		n++
		t.Run(cm.file+"/"+cm.Metadata.Name, func(t *testing.T) {
			env := map[string]string{}
			mounted := false
			for _, w := range ws {
				if w.configMap != cm || w.configKey != "portcullis.yaml" {
					continue
				}
				mounted = true
				for _, e := range w.portcullis.Env {
					// Secret values are not in the manifests; hex is what
					// the files tell users to generate.
					env[e.Name] = cmp.Or(e.Value, "0123456789abcdef0123456789abcdef")
				}
			}
			if !mounted {
				t.Fatalf("%v: key portcullis.yaml is not the -config of any Portcullis container", cm)
			}
			f := filepath.Join(t.TempDir(), "portcullis.yaml")
			if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return env[k] }
			if code := run([]string{"check", "-config", f}, strings.NewReader(""), &stdout, &stderr, getenv); code != 0 {
				t.Errorf("run(check -config %v:portcullis.yaml) = %d, want 0\nstdout:\n%s\nstderr:\n%s", cm, code, &stdout, &stderr)
			}
			if stderr.Len() > 0 {
				t.Errorf("check wrote to stderr:\n%s", &stderr)
			}
		})
	}
	if n < 2 {
		t.Errorf("found %d ConfigMaps with a portcullis.yaml key, want at least 2", n)
	}
}

func TestKubernetesServices(t *testing.T) {
	s := loadK8s(t)
	ws := s.workloads(t)
	for _, d := range s.kind("Service") {
		t.Run(d.file+"/"+d.Metadata.Name, func(t *testing.T) {
			spec := k8sDecodeSpec[k8sServiceSpec](t, d)
			if len(spec.Selector) == 0 {
				t.Fatalf("no selector")
			}
			var sel []*k8sWorkload
			for _, w := range ws {
				if w.doc.file == d.file && w.doc.Metadata.Namespace == d.Metadata.Namespace && k8sSelects(spec.Selector, w.spec.Template.Metadata.Labels) {
					sel = append(sel, w)
				}
			}
			if len(sel) == 0 {
				t.Fatalf("selector %v matches no Deployment's pods in %s", spec.Selector, d.file)
			}
			if len(spec.Ports) == 0 {
				t.Fatalf("no ports")
			}
			for _, w := range sel {
				for _, p := range spec.Ports {
					target := cmp.Or(p.TargetPort, strconv.Itoa(p.Port))
					got, ok := w.pod.port(target)
					if !ok {
						t.Errorf("port %d: targetPort %q is not a port of %v", p.Port, target, w.doc)
						continue
					}
					if w.portcullis != nil && got != w.listenPort(t) {
						t.Errorf("port %d: targetPort %q = %d, want only Portcullis's server.listen port %d", p.Port, target, got, w.listenPort(t))
					}
				}
			}
		})
	}
}

// portcullisService returns the workload behind Service ns/name when it
// runs Portcullis, and the Service's spec.
func k8sPortcullisService(t *testing.T, s *k8sSet, ws []*k8sWorkload, ns, name string) (*k8sWorkload, *k8sServiceSpec) {
	t.Helper()
	d := s.find("Service", ns, name)
	if d == nil {
		return nil, nil
	}
	spec := k8sDecodeSpec[k8sServiceSpec](t, d)
	for _, w := range ws {
		if w.portcullis != nil && w.doc.Metadata.Namespace == ns && k8sSelects(spec.Selector, w.spec.Template.Metadata.Labels) {
			return w, spec
		}
	}
	return nil, spec
}

const (
	k8sAnnAuthURL     = "nginx.ingress.kubernetes.io/auth-url"
	k8sAnnAuthSignin  = "nginx.ingress.kubernetes.io/auth-signin"
	k8sAnnAuthHeaders = "nginx.ingress.kubernetes.io/auth-response-headers"
)

func TestKubernetesIngressForwardAuth(t *testing.T) {
	s := loadK8s(t)
	ws := s.workloads(t)
	ingresses := s.kind("Ingress")
	specs := map[*k8sDoc]*k8sIngressSpec{}
	for _, d := range ingresses {
		specs[d] = k8sDecodeSpec[k8sIngressSpec](t, d)
	}
	nAuth := 0
	for _, d := range ingresses {
		t.Run(d.file+"/"+d.Metadata.Name, func(t *testing.T) {
			spec := specs[d]
			if spec.IngressClassName == "" {
				t.Errorf("no ingressClassName")
			}
			// Backends that are Services of these manifests have the port.
			for _, r := range spec.Rules {
				if r.Host == "" {
					t.Errorf("a rule without host")
				}
				for _, p := range r.HTTP.Paths {
					b := p.Backend.Service
					svc := s.find("Service", d.Metadata.Namespace, b.Name)
					if svc == nil {
						continue // the user's app
					}
					ss := k8sDecodeSpec[k8sServiceSpec](t, svc)
					if !slices.ContainsFunc(ss.Ports, func(sp k8sServicePort) bool {
						return (b.Port.Number != 0 && sp.Port == b.Port.Number) || (b.Port.Name != "" && sp.Name == b.Port.Name)
					}) {
						t.Errorf("%s%s: backend %s port %+v is not a port of %v", r.Host, p.Path, b.Name, b.Port, svc)
					}
				}
			}

			authURL, ok := d.Metadata.Annotations[k8sAnnAuthURL]
			if !ok {
				return
			}
			nAuth++
			u, err := url.Parse(authURL)
			if err != nil {
				t.Fatalf("%s %q: %v", k8sAnnAuthURL, authURL, err)
			}
			if u.Scheme != "http" || u.Path != "/oauth2/auth" || u.RawQuery != "" {
				t.Errorf("%s %q: want http://SERVICE.NAMESPACE.svc.cluster.local:PORT/oauth2/auth", k8sAnnAuthURL, authURL)
			}
			svcName, rest, _ := strings.Cut(u.Hostname(), ".")
			ns, suffix, _ := strings.Cut(rest, ".")
			if suffix != "svc.cluster.local" {
				t.Fatalf("%s host %q: want SERVICE.NAMESPACE.svc.cluster.local", k8sAnnAuthURL, u.Hostname())
			}
			w, svc := k8sPortcullisService(t, s, ws, ns, svcName)
			if w == nil {
				t.Fatalf("%s %q: no Service %s/%s in front of a Portcullis Deployment in %s", k8sAnnAuthURL, authURL, ns, svcName, k8sDir)
			}
			port := u.Port()
			if !slices.ContainsFunc(svc.Ports, func(sp k8sServicePort) bool {
				return strconv.Itoa(sp.Port) == port
			}) {
				t.Errorf("%s %q: port %q is not a port of Service %s/%s", k8sAnnAuthURL, authURL, port, ns, svcName)
			}
			if got, want := d.Metadata.Annotations[k8sAnnAuthSignin], "https://$host/oauth2/start?rd=$escaped_request_uri"; got != want {
				t.Errorf("%s = %q, want %q", k8sAnnAuthSignin, got, want)
			}
			var hdrs []string
			for _, h := range strings.Split(d.Metadata.Annotations[k8sAnnAuthHeaders], ",") {
				hdrs = append(hdrs, strings.TrimSpace(h))
			}
			for _, h := range []string{"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups"} {
				if !slices.Contains(hdrs, h) {
					t.Errorf("%s = %q, want it to include %s", k8sAnnAuthHeaders, d.Metadata.Annotations[k8sAnnAuthHeaders], h)
				}
			}

			// What the Portcullis behind auth-url needs to answer for
			// these hosts.
			cfg := w.config
			if len(cfg.Server.TrustedProxies) == 0 {
				t.Errorf("%v: server.trusted_proxies is empty: X-Original-URL from the ingress controller would be ignored", w.configMap)
			}
			pub, err := url.Parse(cfg.Server.PublicURL)
			if err != nil {
				t.Fatalf("%v: server.public_url: %v", w.configMap, err)
			}
			for _, r := range spec.Rules {
				if !strings.EqualFold(pub.Hostname(), r.Host) {
					t.Errorf("host %s: %v has server.public_url %q: the session cookie and /oauth2/callback would be on another host", r.Host, w.configMap, cfg.Server.PublicURL)
				}
				if !slices.ContainsFunc(cfg.Upstreams, func(up deployUpstream) bool {
					return up.Host == "" || strings.EqualFold(up.Host, r.Host)
				}) {
					t.Errorf("host %s: %v has no upstream for it: forward-auth would answer 403", r.Host, w.configMap)
				}
				if pub.Scheme == "https" && !slices.ContainsFunc(spec.TLS, func(tl k8sIngressTLS) bool {
					return slices.Contains(tl.Hosts, r.Host)
				}) {
					t.Errorf("host %s: public_url is https but spec.tls does not cover the host", r.Host)
				}
				// auth-signin sends the browser to /oauth2/start on this
				// host: another Ingress, without auth, routes /oauth2 there.
				if !k8sOAuth2Routed(t, s, ws, specs, r.Host, w) {
					t.Errorf("host %s: no Ingress without %s routes /oauth2 to Portcullis %v", r.Host, k8sAnnAuthURL, w.doc)
				}
			}
		})
	}
	if nAuth == 0 {
		t.Errorf("no Ingress with %s", k8sAnnAuthURL)
	}
}

func k8sOAuth2Routed(t *testing.T, s *k8sSet, ws []*k8sWorkload, specs map[*k8sDoc]*k8sIngressSpec, host string, want *k8sWorkload) bool {
	for d, spec := range specs {
		if _, auth := d.Metadata.Annotations[k8sAnnAuthURL]; auth {
			continue
		}
		for _, r := range spec.Rules {
			if !strings.EqualFold(r.Host, host) {
				continue
			}
			for _, p := range r.HTTP.Paths {
				if strings.TrimSuffix(p.Path, "/") != "/oauth2" || p.PathType != "Prefix" {
					continue
				}
				if w, _ := k8sPortcullisService(t, s, ws, d.Metadata.Namespace, p.Backend.Service.Name); w == want {
					return true
				}
			}
		}
	}
	return false
}

// k8sSecretRef is one Secret key a pod needs.
type k8sSecretRef struct{ ns, name, key string }

// TestKubernetesSecretsDocumented checks that every Secret key a file's pods
// use is created by the "kubectl create secret generic" command in that
// file's comments (or defined in the file), so that the instructions work.
func TestKubernetesSecretsDocumented(t *testing.T) {
	s := loadK8s(t)
	ws := s.workloads(t)
	need := map[string][]k8sSecretRef{} // file -> refs
	add := func(w *k8sWorkload, name, key string) {
		need[w.doc.file] = append(need[w.doc.file], k8sSecretRef{w.doc.Metadata.Namespace, name, key})
	}
	for _, w := range ws {
		for _, c := range w.pod.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(w, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
		for _, v := range w.pod.Volumes {
			if v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				add(w, v.Secret.SecretName, it.Key)
			}
		}
		if w.portcullis != nil {
			for _, f := range w.config.configFiles() {
				if v, key, err := k8sMountedFile(w.pod, w.portcullis, f.path); err == nil && v.Secret != nil {
					add(w, v.Secret.SecretName, key)
				}
			}
		}
	}
	if len(need) == 0 {
		t.Fatal("no pod uses a Secret; the sidecar and standalone pods should")
	}
	for file, refs := range need {
		t.Run(file, func(t *testing.T) {
			have := kubectlSecrets(s.text[file])
			for _, d := range s.kind("Secret") {
				if d.file != file {
					continue
				}
				for k := range d.Data {
					have[k8sSecretRef{d.Metadata.Namespace, d.Metadata.Name, k}] = true
				}
				for k := range d.StringData {
					have[k8sSecretRef{d.Metadata.Namespace, d.Metadata.Name, k}] = true
				}
			}
			for _, r := range refs {
				if !have[r] {
					t.Errorf("Secret %s key %q is used but not created by a \"kubectl create secret generic\" comment in %s (created: %v)", k8sKey(r.ns, r.name), r.key, file, have)
				}
			}
		})
	}
}

var (
	kubectlCreate = regexp.MustCompile(`^kubectl\s.*\bcreate\s+secret\s+generic\s+([a-z0-9.-]+)`)
	kubectlNS     = regexp.MustCompile(`\s(?:-n|--namespace)(?:=|\s+)([a-z0-9-]+)`)
	kubectlKey    = regexp.MustCompile(`--from-(literal|file)=([^=\s"']+)(=?)`)
)

// kubectlSecrets reads the Secret keys that "kubectl create secret generic"
// commands in the file's comments create; commands may continue over
// lines ending in a backslash.
func kubectlSecrets(text string) map[k8sSecretRef]bool {
	var cmds []string
	cur := ""
	for _, line := range strings.Split(text, "\n") {
		c, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			cur = ""
			continue
		}
		c = strings.TrimSpace(c)
		if cur != "" {
			c = cur + " " + c
		}
		if s, cont := strings.CutSuffix(c, `\`); cont {
			cur = s
			continue
		}
		cur = ""
		cmds = append(cmds, c)
	}
	have := map[k8sSecretRef]bool{}
	for _, c := range cmds {
		m := kubectlCreate.FindStringSubmatch(c)
		if m == nil {
			continue
		}
		ns := ""
		if n := kubectlNS.FindStringSubmatch(c); n != nil {
			ns = n[1]
		}
		for _, k := range kubectlKey.FindAllStringSubmatch(c, -1) {
			key := k[2]
			if k[1] == "file" && k[3] == "" {
				key = path.Base(key) // --from-file=PATH: the key is its base name
			}
			have[k8sSecretRef{ns, m[1], key}] = true
		}
	}
	return have
}

// dockerStage is one stage of the repository's Dockerfile.
type dockerStage struct {
	from, name string
	instrs     []dockerInstr
}

type dockerInstr struct{ op, args string }

// dockerfileStages parses ../../Dockerfile into its stages.
func dockerfileStages(t *testing.T) []dockerStage {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var logical []string
	cur := ""
	for _, line := range strings.Split(string(raw), "\n") {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		if s, cont := strings.CutSuffix(trim, `\`); cont {
			cur += s + " "
			continue
		}
		logical = append(logical, cur+trim)
		cur = ""
	}
	for _, l := range logical {
		op, args, _ := strings.Cut(l, " ")
		op, args = strings.ToUpper(op), strings.TrimSpace(args)
		if op == "FROM" {
			// FROM [--platform=…] IMAGE [AS NAME]
			f := slices.DeleteFunc(strings.Fields(args), func(w string) bool { return strings.HasPrefix(w, "--") })
			if len(f) == 0 {
				t.Fatalf("Dockerfile: FROM without an image")
			}
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if op == "ARG" {
				continue
			}
			t.Fatalf("Dockerfile: %s before FROM", op)
		}
		last := &stages[len(stages)-1]
		last.instrs = append(last.instrs, dockerInstr{op, args})
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a build stage and a runtime stage", len(stages))
	}
	return stages
}

func (st *dockerStage) all(op string) []string {
	var out []string
	for _, in := range st.instrs {
		if in.op == op {
			out = append(out, in.args)
		}
	}
	return out
}

// buildCommand is the one RUN of the Dockerfile that builds the binary.
func dockerBuildCommand(t *testing.T, stages []dockerStage) (stage *dockerStage, cmd, out string) {
	t.Helper()
	for i := range stages {
		for _, r := range stages[i].all("RUN") {
			if strings.HasPrefix(r, "CGO_ENABLED=0 go build") {
				if cmd != "" {
					t.Fatalf("Dockerfile has two RUN CGO_ENABLED=0 go build commands:\n%s\n%s", cmd, r)
				}
				stage, cmd = &stages[i], r
			}
		}
	}
	if cmd == "" {
		t.Fatal("Dockerfile has no RUN starting with CGO_ENABLED=0 go build")
	}
	m := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("Dockerfile build command has no -o OUTPUT: %s", cmd)
	}
	return stage, cmd, m[1]
}

func TestDockerfileRuntimeStage(t *testing.T) {
	stages := dockerfileStages(t)
	final := &stages[len(stages)-1]
	build, _, out := dockerBuildCommand(t, stages)

	users := final.all("USER")
	if len(users) == 0 {
		t.Errorf("final stage has no USER: it would run as root")
	} else {
		u := users[len(users)-1]
		uid, _, _ := strings.Cut(u, ":")
		// Numeric, so that Kubernetes can verify runAsNonRoot.
		if n, err := strconv.Atoi(uid); err != nil || n != k8sUID {
			t.Errorf("final stage USER %q, want %d (the manifests' runAsUser)", u, k8sUID)
		}
	}
	copiesCerts := slices.ContainsFunc(final.all("COPY"), func(s string) bool { return strings.Contains(s, "ca-certificates") })
	if !strings.HasPrefix(final.from, "gcr.io/distroless/") && !copiesCerts {
		t.Errorf("final stage FROM %s: want a distroless image (it has CA certificates) or a COPY of ca-certificates", final.from)
	}
	wantPort := strconv.Itoa(k8sAddrPort(t, "server.DefaultListen", server.DefaultListen))
	var exposed []string
	for _, e := range final.all("EXPOSE") {
		for _, p := range strings.Fields(e) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	if !slices.Contains(exposed, wantPort) {
		t.Errorf("final stage EXPOSE %q, want %s (server.listen's default %q)", exposed, wantPort, server.DefaultListen)
	}

	// The entrypoint is the binary the build command wrote.
	if got := final.all("ENTRYPOINT"); len(got) != 1 || got[0] != `["/portcullis"]` {
		t.Errorf("final stage ENTRYPOINT %q, want [\"/portcullis\"]", got)
	}
	from := "--from=" + build.name
	if !slices.ContainsFunc(final.all("COPY"), func(s string) bool {
		f := strings.Fields(s)
		return build.name != "" && slices.Contains(f, from) && len(f) >= 2 && f[len(f)-2] == out && f[len(f)-1] == "/portcullis"
	}) {
		t.Errorf("final stage has no \"COPY %s %s /portcullis\"", from, out)
	}

	// The build image's Go is at least go.mod's go version.
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gm := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(mod)
	im := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(build.from)
	if gm == nil || im == nil {
		t.Fatalf("build stage FROM %q, go.mod go line %q: want golang:MAJOR.MINOR… and go MAJOR.MINOR", build.from, gm)
	}
	if mj, mn, ij, in := dockerAtoi(gm[1]), dockerAtoi(gm[2]), dockerAtoi(im[1]), dockerAtoi(im[2]); ij < mj || (ij == mj && in < mn) {
		t.Errorf("build stage FROM %s is older than go.mod's go %s.%s", build.from, gm[1], gm[2])
	}
}

func dockerAtoi[S string | []byte](s S) int {
	n, _ := strconv.Atoi(string(s))
	return n
}

// TestDockerfileBuildsStaticBinary runs the Dockerfile's build command
// (outside Docker) and checks that the result is a static binary that
// knows its version.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	stages := dockerfileStages(t)
	_, cmd, out := dockerBuildCommand(t, stages)
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "portcullis")
	sh := regexp.MustCompile(`(\s-o\s+)`+regexp.QuoteMeta(out)).ReplaceAllLiteralString(cmd, " -o "+bin)
	sh = strings.NewReplacer("${VERSION}", "test", "$VERSION", "test").Replace(sh)
	if strings.Contains(sh, "$") {
		t.Fatalf("build command still refers to a build argument after substituting VERSION: %s", sh)
	}
	build := exec.CommandContext(t.Context(), "sh", "-c", sh)
	build.Dir = "../.."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("sh -c %q: %v\n%s", sh, err, b)
	}

	got, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	if want := "portcullis test\n"; string(got) != want {
		t.Errorf("%s version = %q, want %q", bin, got, want)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked and will not run on distroless/static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary imports %q, want none", libs)
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("binary has a .dynamic section")
	}
	// -s -w: no symbol table, no DWARF.
	for _, name := range []string{".symtab", ".debug_info", ".zdebug_info"} {
		if f.Section(name) != nil {
			t.Errorf("binary has a %s section: build with -ldflags=\"-s -w\"", name)
		}
	}

	// -trimpath: no build machine paths in the image.
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(root+"/")) {
		t.Errorf("binary contains the source path %s: build with -trimpath", root)
	}

	// Profile-guided optimisation: go build's default -pgo=auto applies
	// cmd/portcullis/default.pgo (see bench/README.md), and the build info
	// says so. Without it every request costs a few per cent more.
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	pgo := ""
	for _, s := range info.Settings {
		if s.Key == "-pgo" {
			pgo = s.Value
		}
	}
	if filepath.Base(pgo) != "default.pgo" {
		t.Errorf("binary built with -pgo=%q, want cmd/portcullis/default.pgo (is it missing, or does the build pass -pgo=off?)", pgo)
	}
}
