// Package bench holds the load benchmark (run.sh) and its servers; this
// test only checks that the script still works end to end. What it
// measures is judged by people reading its report, never by a test.
package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRunScript runs bench/run.sh for one second per run on a few rows:
// it must build everything, sign in through the real login form, get
// 2xx from every signed-in row, measure, and write a complete report.
func TestRunScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries and drives real servers with wrk")
	}
	for _, tool := range []string{"bash", "wrk", "curl", "taskset", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test-deps.sh installs what the tests need): %v", tool, err)
		}
	}
	out := filepath.Join(t.TempDir(), "report.md")
	cmd := exec.Command("bash", "run.sh")
	cmd.Env = append(os.Environ(),
		"PATHS=cookie browsercookie unauth download", "DURATION=1", "ROUNDS=2", "DOWNLOADS=1",
		"MAX_SECONDS=400", "OUT="+out, "KEEP=0", "BENCH_BOUNDED=")
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench/run.sh: %v\n%s", err, got)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no report at OUT: %v\n%s", err, got)
	}
	report := string(b)
	for _, want := range []string{
		"**Pinning (taskset):**",
		"| signed-in cookie `/` | 200/200/200 |",
		"| signed-in browser `/` (11 header fields) | 200/200/200 |",
		"| unauthenticated API `/` | 200/200/401 |",
		"| download 100 MiB (MiB/s) | 200/200/200 |",
		"- signed-in req/s ÷ bare: ",
		"- signed-in p99 ÷ bare p99 at 64 connections: ",
		"- download MiB/s ÷ bare: ",
		"- Portcullis RSS under load (largest mid-run sample): ",
		"### Portcullis ÷ bare in each round",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q\n%s", want, report)
		}
	}
	// Every ratio line has a verdict on a number, the other estimate and
	// the rounds' spread beside it: a broken awk pipeline shows up as a dash
	// or an empty value.
	for _, line := range strings.Split(report, "\n") {
		if !strings.HasPrefix(line, "- ") || !strings.Contains(line, "(target") {
			continue
		}
		if !strings.Contains(line, "**met**") && !strings.Contains(line, "**not met**") {
			t.Errorf("target line without a verdict: %q", line)
		}
		if strings.Contains(line, "÷ bare") && !ratioLine.MatchString(line) {
			t.Errorf("ratio line without both estimates: %q", line)
		}
	}
}

var ratioLine = regexp.MustCompile(`: [0-9]+\.[0-9]{2} \(target .*; ratio of the medians [0-9]+\.[0-9]{2}; middle half of the rounds [0-9]+\.[0-9]{2}–[0-9]+\.[0-9]{2}$`)

// TestRunScriptRefusesBadKnobs: a typo in a knob stops the run at once,
// before anything is built, saying which knob.
func TestRunScriptRefusesBadKnobs(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"PATHS=cookie cookies", `PATHS: unknown "cookies"`},
		{"DURATION=fast", "must be whole numbers"},
		{"ROUNDS=0", "must be at least 1"},
	} {
		cmd := exec.Command("bash", "run.sh")
		cmd.Env = append(os.Environ(), tt.env, "BENCH_BOUNDED=")
		got, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(got), tt.want) {
			t.Errorf("%s: err %v, output %q; want a failure saying %q", tt.env, err, got, tt.want)
		}
	}
}
