// Command portcullis runs the Portcullis authenticating reverse proxy.
//
//	portcullis serve  [-config FILE]   run (default FILE: ./portcullis.yaml, else $PORTCULLIS_CONFIG)
//	portcullis check  [-config FILE]   validate config and print what would run; exit 1 with every error found
//	portcullis hash-password           read a password on stdin, print a bcrypt hash
//	portcullis secret                  print a new random session secret (base64, 32 bytes)
//	portcullis version
//
// This package is the only one that reads the config file and the
// environment, handles signals and calls os.Exit; everything else is wired
// from here.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: portcullis <command> [flags]

commands:
  serve  [-config FILE]   run Portcullis (default FILE: ./portcullis.yaml, else $PORTCULLIS_CONFIG)
  check  [-config FILE]   validate the config and print what would run; exit 1 listing every error
  hash-password           read a password on stdin, print its bcrypt hash (for issuer.users[].password_hash)
  secret                  print a new random session secret (for session.secrets)
  version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve", "check":
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "config file (default ./portcullis.yaml, else $PORTCULLIS_CONFIG)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		file := configPath(*path, getenv)
		if args[0] == "check" {
			return check(file, stdout, stderr, getenv)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		if err := serve(ctx, file, stderr, getenv, hup); err != nil {
			fmt.Fprintf(stderr, "portcullis: %v\n", err)
			return 1
		}
		return 0
	case "hash-password":
		return hashPassword(stdin, stdout, stderr)
	case "secret":
		return secret(stdout)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "portcullis %s\n", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// configPath picks the config file: the flag, else ./portcullis.yaml when it
// exists, else $PORTCULLIS_CONFIG, else ./portcullis.yaml (to name it in the error).
func configPath(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if _, err := os.Stat("portcullis.yaml"); err == nil {
		return "portcullis.yaml"
	}
	if env := getenv("PORTCULLIS_CONFIG"); env != "" {
		return env
	}
	return "portcullis.yaml"
}

func check(file string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, errs := loadConfig(file, getenv)
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "%s: %d problem(s):\n", file, len(errs))
		for _, e := range errs {
			fmt.Fprintf(stderr, "  %v\n", e)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", file)
	printSummary(stdout, cfg)
	return 0
}

// printSummary says what serve would run, without any secret.
func printSummary(w io.Writer, c *fileConfig) {
	tlsMode := c.Server.TLS.Mode
	if tlsMode == "" {
		tlsMode = "off"
	}
	listen := c.Server.Listen
	if listen == "" {
		listen = ":4180"
	}
	fmt.Fprintf(w, "  listen %s (tls %s), public URL %s\n", listen, tlsMode, c.Server.PublicURL)
	if c.Server.MetricsListen != "" {
		fmt.Fprintf(w, "  metrics, healthz and readyz on %s\n", c.Server.MetricsListen)
	}
	store := c.Session.Store.Type
	if store == "" {
		store = "cookie"
	}
	fmt.Fprintf(w, "  sessions in %s store, cookie %q\n", store, orDefault(c.Session.CookieName, "_portcullis"))
	if c.usesBuiltinIssuer() {
		fmt.Fprintf(w, "  login: built-in issuer at %s (%d user(s) configured, %d client(s))\n",
			orDefault(c.Issuer.URL, strings.TrimSuffix(c.Server.PublicURL, "/")+"/oauth2/issuer"), len(c.Issuer.Users), len(c.Issuer.Clients))
	} else {
		fmt.Fprintf(w, "  login: %s as client %q\n", c.Login.Issuer, c.Login.ClientID)
	}
	for i, u := range c.Upstreams {
		host := u.Host
		if host == "" {
			host = "*"
		}
		var extra []string
		if len(u.Public) > 0 {
			extra = append(extra, "public "+strings.Join(u.Public, ","))
		}
		if n := len(u.Allow.Users) + len(u.Allow.Emails) + len(u.Allow.Domains) + len(u.Allow.Groups); n > 0 {
			extra = append(extra, fmt.Sprintf("%d allow rule(s)", n))
		} else {
			extra = append(extra, "any signed-in user")
		}
		if u.Bearer {
			extra = append(extra, "bearer tokens accepted")
		}
		fmt.Fprintf(w, "  upstreams[%d] %s: %s%s -> %s (%s)\n", i, u.Name, host, orDefault(u.Path, "/"), u.URL, strings.Join(extra, "; "))
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// bcryptCost is what hash-password uses: slow enough for an offline attack
// to hurt, fast enough (~250 ms) for a sign-in.
const bcryptCost = 12

func hashPassword(stdin io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "portcullis: read password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "portcullis: empty password; usage: echo 'the password' | portcullis hash-password")
		return 1
	}
	if len(pw) > 72 {
		fmt.Fprintln(stderr, "portcullis: password longer than 72 bytes (bcrypt's limit); choose a shorter one")
		return 1
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: hash password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(h))
	return 0
}

func secret(stdout io.Writer) int {
	fmt.Fprintln(stdout, newSecret())
	return 0
}

// newSecret returns 32 random bytes, base64-encoded.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.StdEncoding.EncodeToString(b[:])
}
