// Package bench holds the load benchmark (run.sh) and its servers; this
// test only checks that the script still works end to end. What it
// measures is judged by people reading its report, never by a test.
package bench

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRunScript runs bench/run.sh (three rounds of one-second runs) on a few rows:
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
		"PATHS=cookie browsercookie unauth download", "DURATION=1", "ROUNDS=3", "DOWNLOADS=1",
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
	checkPairedRatios(t, report, "signed-in cookie `/`", "signed-in req/s ÷ bare")
}

// checkPairedRatios checks the arithmetic of one row's ratios against the
// report's own raw figures: each per-round ratio is Portcullis's run over
// the bare run of the same round, the table's P ÷ bare is the median of
// those, the verdict is judged on that, and the ratio of the medians beside
// it is what its name says.
func checkPairedRatios(t *testing.T, report, label, targetName string) {
	t.Helper()
	var runs, perRound, table []string // cells of the row in each table
	for _, line := range strings.Split(report, "\n") {
		if !strings.HasPrefix(line, "| "+label+" |") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case len(cells) == 4 && strings.Contains(cells[1], "·"):
			runs = cells
		case len(cells) == 3 && strings.Contains(cells[1], "·"):
			perRound = cells
		case len(cells) > 10:
			table = cells
		}
	}
	if runs == nil || perRound == nil || table == nil {
		t.Fatalf("%s: rows not found in every table of the report", label)
	}
	bare, pc, ratios := numbers(t, runs[2]), numbers(t, runs[3]), numbers(t, perRound[1])
	if len(bare) != len(pc) || len(ratios) != len(bare) {
		t.Fatalf("%s: %d bare runs, %d Portcullis runs, %d per-round ratios", label, len(bare), len(pc), len(ratios))
	}
	for i := range ratios {
		if want := pc[i] / bare[i]; !near(ratios[i], want, 0.002) {
			t.Errorf("%s round %d: per-round ratio %.3f, want %.0f / %.0f = %.3f", label, i+1, ratios[i], pc[i], bare[i], want)
		}
	}
	// The script takes its medians of the per-round ratios as printed (3
	// places) and prints them to 2: they must agree to within half a cent.
	paired := median(ratios)
	if got := number(t, table[5]); !near(got, paired, 0.0051) {
		t.Errorf("%s: table P ÷ bare %.2f, want the median of the per-round ratios %.3f", label, got, paired)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(targetName) + `: ([0-9.]+) \(target >= ([0-9.]+)\): \*\*(met|not met)\*\*; ratio of the medians ([0-9.]+);`).
		FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no %q target line", targetName)
	}
	verdict, limit := number(t, m[1]), number(t, m[2])
	if !near(verdict, paired, 0.0051) {
		t.Errorf("%s: verdict on %.2f, want the paired ratio %.3f", targetName, verdict, paired)
	}
	if met := m[3] == "met"; met != (paired >= limit) && !near(paired, limit, 0.001) {
		t.Errorf("%s: verdict %q for %.3f against %.2f", targetName, m[3], paired, limit)
	}
	if got, want := number(t, m[4]), median(pc)/median(bare); !near(got, want, 0.01) {
		t.Errorf("%s: ratio of the medians %.2f, want %.3f", targetName, got, want)
	}
}

// numbers parses a " · "-joined cell.
func numbers(t *testing.T, cell string) []float64 {
	t.Helper()
	var out []float64
	for _, f := range strings.Split(cell, "·") {
		out = append(out, number(t, strings.TrimSpace(f)))
	}
	return out
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("not a number in the report: %q", s)
	}
	return v
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

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
