package portcullis_test

// The allowed import graph, as policy (in the spirit of go/build's
// deps_test.go). A new edge between our packages fails this test until it is
// added here with a line saying why. See ../shared/DESIGN.md "Layout".

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/portcullis-proxy/portcullis"

// allowed lists, for each package, the packages of this module it may
// import. A package missing from the map may import nothing of ours.
var allowed = map[string][]string{
	"auth":                        {},
	"auth/authtest":               {},
	"auth/session":                {"auth"},
	"auth/session/sessiontest":    {"auth", "auth/session", "auth/authtest"}, // the shared test clock
	"auth/login":                  {"auth", "auth/session"},                  // the relying party saves the session it establishes
	"auth/bearer":                 {"auth"},
	"auth/policy":                 {"auth"},
	"auth/issuer/store":           {"auth"},
	"auth/issuer/store/storetest": {"auth", "auth/issuer/store"},
	"auth/issuer":                 {"auth", "auth/issuer/store"},
	"upstream":                    {"auth"},
	"proxy/server":                {},
	"proxy": {"auth", "auth/session", "auth/login", "auth/bearer", "auth/policy",
		"auth/issuer", "auth/issuer/store", "upstream"},
	"cmd/portcullis": {"*"},
}

// thirdParty limits outside modules where DESIGN.md says so.
var thirdParty = map[string][]string{
	"auth":         {}, // the leaf vocabulary: standard library only
	"proxy/server": {"github.com/caddyserver/certmagic", "github.com/mholt/acmez", "go.uber.org/zap", "golang.org/x/net", "github.com/prometheus/client_golang"},
}

func TestImportGraph(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if pkg == "." {
			return nil
		}
		isTest := strings.HasSuffix(path, "_test.go")
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(ip, module+"/"); ok {
				if strings.HasSuffix(rest, "test") && !isTest && !strings.HasSuffix(pkg, "test") {
					t.Errorf("%s imports %s: *test packages are for _test.go files only", path, rest)
				}
				if rest == "proxy" || strings.HasPrefix(rest, "cmd/") {
					t.Errorf("%s imports %s: nothing imports proxy or cmd", path, rest)
				}
				if isTest {
					continue
				}
				if !edgeAllowed(pkg, rest) {
					t.Errorf("%s imports %s: edge %s -> %s is not in deps_test.go's allowed list", path, rest, pkg, rest)
				}
				continue
			}
			if isTest {
				continue
			}
			if list, ok := thirdParty[pkg]; ok && strings.Contains(strings.SplitN(ip, "/", 2)[0], ".") {
				if !hasPrefixIn(ip, list) {
					t.Errorf("%s imports %s: %s may not import that module", path, ip, pkg)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func edgeAllowed(from, to string) bool {
	list, ok := allowed[from]
	if !ok {
		return false
	}
	for _, a := range list {
		if a == "*" || a == to {
			return true
		}
	}
	return false
}

func hasPrefixIn(s string, list []string) bool {
	for _, p := range list {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) {
	if _, err := os.Stat("go.mod"); err != nil {
		panic("run from the module root")
	}
	os.Exit(m.Run())
}
