package login

import "testing"

func TestCleanReturnTarget(t *testing.T) {
	allowed := []string{"trusted.example.com", "Other.Example.COM.", "ported.example.com:8443"}
	tests := []struct {
		name, rd, want string
	}{
		// Accepted: local paths.
		{"root", "/", "/"},
		{"path", "/app/page", "/app/page"},
		{"query and fragment", "/a?b=c&d=%2F%2Fe#frag", "/a?b=c&d=%2F%2Fe#frag"},
		{"encoded slash mid path", "/a%2Fb", "/a%2Fb"},
		{"dot segment harmless", "/a/./b/../c", "/a/./b/../c"},
		{"unicode path", "/café", "/caf%C3%A9"},
		// Accepted: allowed absolute URLs.
		{"allowed host", "https://trusted.example.com/x?y=1", "https://trusted.example.com/x?y=1"},
		{"allowed host http", "http://trusted.example.com/", "http://trusted.example.com/"},
		{"allowed host any port", "https://trusted.example.com:8080/x", "https://trusted.example.com:8080/x"},
		{"allowed host case", "https://TRUSTED.example.com/x", "https://TRUSTED.example.com/x"},
		{"allowed host trailing dot", "https://trusted.example.com./x", "https://trusted.example.com./x"},
		{"allowed entry with dot and case", "https://other.example.com/", "https://other.example.com/"},
		{"scheme upper case", "HTTPS://trusted.example.com/", "https://trusted.example.com/"},
		{"allowed host with port", "https://ported.example.com:8443/", "https://ported.example.com:8443/"},

		// Refused.
		{"empty", "", "/"},
		{"scheme relative", "//evil.com", "/"},
		{"scheme relative path", "//evil.com/x", "/"},
		{"triple slash", "///evil.com", "/"},
		{"slash backslash", "/\\evil.com", "/"},
		{"double backslash", "\\\\evil.com", "/"},
		{"backslash slash", "\\/evil.com", "/"},
		{"backslash in path", "/a\\b", "/"},
		{"absolute not allowed", "https://evil.com", "/"},
		{"absolute not allowed path", "https://evil.com/trusted.example.com", "/"},
		{"suffix trick", "https://trusted.example.com.evil.com/", "/"},
		{"prefix trick", "https://eviltrusted.example.com/", "/"},
		{"userinfo", "https://trusted.example.com@evil.com", "/"},
		{"userinfo on allowed", "https://user:pw@trusted.example.com/", "/"},
		{"userinfo encoded", "https://trusted.example.com%40evil.com/", "/"},
		{"userinfo encoded colon", "https://trusted.example.com%2F@evil.com/", "/"},
		{"backslash authority", "https://evil.com\\@trusted.example.com/", "/"},
		{"scheme backslash", "https:\\\\evil.com", "/"},
		{"scheme slash backslash", "https:/\\evil.com", "/"},
		{"scheme one slash", "https:/evil.com", "/"},
		{"scheme no slash", "https:evil.com", "/"},
		{"scheme no slash allowed", "https:trusted.example.com", "/"},
		{"javascript", "javascript:alert(1)", "/"},
		{"javascript comment", "javascript://trusted.example.com/%0aalert(1)", "/"},
		{"data", "data:text/html,<script>alert(1)</script>", "/"},
		{"ftp allowed host", "ftp://trusted.example.com/", "/"},
		{"encoded double slash", "/%2F%2Fevil.com", "/"},
		{"encoded double slash lower", "/%2f%2fevil.com", "/"},
		{"encoded slash after slash", "/%2Fevil.com", "/"},
		{"double encoded", "/%252F%252Fevil.com", "/"},
		{"triple encoded", "/%25252F%25252Fevil.com", "/"},
		{"encoded backslash", "/%5Cevil.com", "/"},
		{"encoded backslash lower", "/%5cevil.com", "/"},
		{"double encoded backslash", "/%255Cevil.com", "/"},
		{"encoded tab", "/%09/evil.com", "/"},
		{"raw tab", "/\t/evil.com", "/"},
		{"raw newline", "/\n/evil.com", "/"},
		{"encoded newline", "/%0a/evil.com", "/"},
		{"encoded CR", "/%0D/evil.com", "/"},
		{"encoded NUL", "/a%00b", "/"},
		{"raw NUL", "/a\x00b", "/"},
		{"DEL", "/a\x7fb", "/"},
		{"encoded DEL", "/a%7Fb", "/"},
		{"C1 control", "/a\u0085b", "/"},
		{"line separator", "/a\u2028b", "/"},
		{"tab before slashes", "\t//evil.com", "/"},
		{"space before slashes", " //evil.com", "/"},
		{"no leading slash", "evil.com", "/"},
		{"relative path", "app/page", "/"},
		{"encoded leading slashes", "%2F%2Fevil.com", "/"},
		{"dot then slashes", "/.//evil.com", "/"},
		{"dotdot then slashes", "/..//evil.com", "/"},
		{"encoded dot then slashes", "/%2E//evil.com", "/"},
		{"dot encoded slashes", "/./%2F/evil.com", "/"},
		{"bad percent", "/%zz", "/"},
		{"too many layers", "/%25252525252525252525252F", "/"},
		{"protocol relative allowed host", "//trusted.example.com/", "/"},
		{"allowed name wrong port", "https://ported.example.com:9999/", "/"},
		{"empty host", "https:///x", "/"},
		{"only scheme", "https://", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanReturnTarget(tt.rd, allowed); got != tt.want {
				t.Errorf("CleanReturnTarget(%q) = %q, want %q", tt.rd, got, tt.want)
			}
		})
	}
}

func TestCleanReturnTargetNoHosts(t *testing.T) {
	for _, rd := range []string{"https://trusted.example.com/", "http://localhost/"} {
		if got := CleanReturnTarget(rd, nil); got != "/" {
			t.Errorf("CleanReturnTarget(%q, nil) = %q, want %q", rd, got, "/")
		}
	}
}
