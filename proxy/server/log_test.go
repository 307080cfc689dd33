package server

import (
	"log/slog"
	"testing"

	"go.uber.org/zap"
)

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestErrorLogLevels(t *testing.T) {
	tests := []struct {
		line string
		want slog.Level
	}{
		{"http: TLS handshake error from 10.0.0.1:5555: EOF\n", slog.LevelDebug},
		{"http2: server: error reading preface from client 10.0.0.1:5555: EOF\n", slog.LevelDebug},
		{"http: panic serving 10.0.0.1:5555: boom\n", slog.LevelError},
		{"http: superfluous response.WriteHeader call\n", slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var logs logRecorder
			newErrorLog(logs.logger(), "http").Print(tt.line)
			recs := logs.find("")
			if len(recs) != 1 || recs[0].Level != tt.want || recs[0].Attrs["component"] != "http" || recs[0].Msg[len(recs[0].Msg)-1] == '\n' {
				t.Errorf("ErrorLog.Print(%q) logged %+v, want one %v record with component http and no trailing newline", tt.line, recs, tt.want)
			}
		})
	}
}

func TestZapLogger(t *testing.T) {
	var logs logRecorder
	zl := newZapLogger(logs.logger()).Named("obtain").With(zap.String("identifier", "a.example"))
	zl.Warn("renewing", zap.Int("attempt", 2), zap.Strings("names", []string{"a", "b"}))
	zl.Debug("detail")
	recs := logs.find("")
	if len(recs) != 2 {
		t.Fatalf("records = %+v, want 2", recs)
	}
	r := recs[0]
	if r.Level != slog.LevelWarn || r.Msg != "renewing" || r.Attrs["identifier"] != "a.example" || r.Attrs["attempt"] != "2" ||
		r.Attrs["logger"] != "obtain" || r.Attrs["names"] != "[a b]" {
		t.Errorf("zap Warn logged %+v, want warn \"renewing\" with identifier, attempt, names and logger", r)
	}
	if recs[1].Level != slog.LevelDebug {
		t.Errorf("zap Debug logged at %v, want debug", recs[1].Level)
	}
	// A disabled slog level is not even encoded.
	quiet := newZapLogger(slog.New(slog.NewTextHandler(discardWriter{}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if quiet.Core().Enabled(zap.DebugLevel) {
		t.Errorf("zap core Enabled(debug) with an info slog logger = true, want false")
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
