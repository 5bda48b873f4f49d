// Command goclient is the benchmark's compiled load generator, so that client
// cost does not hide gateway cost. It runs one of two paths:
//
//   - gateway-go: the gateway through the generated Go stub, one ClientConn
//     shared by every worker;
//   - floor-go: signed Encord calls straight to the emulator, one keep-alive
//     connection per worker.
//
// It speaks the protocol of bench/loadgen.py: `{"event":"ready"}`, then for
// each command line on stdin (`{"op","concurrency","window_start","seconds"}`)
// one `{"event":"done",...}` line with every measured call's latency.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/encord-gateway/encord-gateway/client_stubs/go/encordgatewayv1"
)

const (
	writeTitle      = "bench key"
	maxErrorSamples = 3
	callTimeout     = 30 * time.Second
)

type options struct {
	path, target, seedFile, caFile, readProject, writeProject string
	readKeys                                                  int
}

type command struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	WindowStart float64 `json:"window_start"` // seconds since the epoch
	Seconds     float64 `json:"seconds"`
}

// call makes one call for the worker that owns it; a non-nil error counts as a failed call.
type call func() error

// pathFunc returns the call for worker i of a cell doing op.
type pathFunc func(op string, worker int) call

var out = bufio.NewWriter(os.Stdout)

func emit(event any) {
	data, err := json.Marshal(event)
	if err != nil {
		log.Fatal(err)
	}
	out.Write(data)
	out.WriteByte('\n')
	out.Flush()
}

// Gateway ----------------------------------------------------------------------

func gatewayPath(o options) pathFunc {
	conn, err := grpc.NewClient(o.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	client := v1.NewApiKeyServiceClient(conn)
	return func(op string, _ int) call {
		if op == "read" {
			request := &v1.ListProjectApiKeysRequest{ProjectHash: o.readProject}
			return func() error {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				defer cancel()
				answer, err := client.ListProjectApiKeys(ctx, request)
				if err != nil {
					return err
				}
				if n := len(answer.GetApiKeys()); n != o.readKeys {
					return fmt.Errorf("%d keys", n)
				}
				return nil
			}
		}
		request := &v1.CreateProjectApiKeyRequest{
			ProjectHash: o.writeProject,
			Title:       writeTitle,
			Scopes:      []v1.ApiKeyScope{v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ},
		}
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			answer, err := client.CreateProjectApiKey(ctx, request)
			if err != nil {
				return err
			}
			if answer.GetApiKey() == "" {
				return errors.New("no key")
			}
			return nil
		}
	}
}

// Floor ------------------------------------------------------------------------

type floor struct {
	url       string
	key       ed25519.PrivateKey
	publicHex string
	tls       *tls.Config
	mu        sync.Mutex
	clients   []*http.Client
}

type envelope struct {
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

// client is worker i's own client: one keep-alive connection, kept across cells.
func (f *floor) client(i int) *http.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.clients) <= i {
		transport := &http.Transport{
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
			TLSClientConfig:     f.tls,
			ForceAttemptHTTP2:   false,
		}
		f.clients = append(f.clients, &http.Client{Transport: transport, Timeout: callTimeout})
	}
	return f.clients[i]
}

// body builds the SDK's bytes: Python's json.dumps with default separators, keys in this order.
func body(method, uid, payload string) []byte {
	return []byte(fmt.Sprintf(`{"query_type": "projectapikey", "query_method": "%s", "values": {"uid": "%s", "payload": %s}}`,
		method, uid, payload))
}

func (f *floor) send(client *http.Client, data []byte) (json.RawMessage, error) {
	digest := sha256.Sum256(data)
	signature := ed25519.Sign(f.key, digest[:])
	request, err := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var trace [16]byte
	rand.Read(trace[:]) // never fails (Go 1.24+)
	h := request.Header
	h["Accept"] = []string{"application/json"}
	h["Content-Type"] = []string{"application/json"}
	h["Accept-Encoding"] = []string{"gzip"}
	h["Resourcetype"] = []string{""}
	h["Resourceid"] = []string{""}
	h["Authorization"] = []string{f.publicHex + ":" + hex.EncodeToString(signature)}
	h["User-Agent"] = []string{"encord-gateway-bench-floor-go"}
	h["X-Cloud-Trace-Context"] = []string{hex.EncodeToString(trace[:]) + "/1;o=1"}
	response, err := client.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(response.Body)
	if err != nil {
		return nil, err
	}
	var answer envelope
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, err
	}
	if answer.Status != 200 {
		return nil, fmt.Errorf("Encord error %s", answer.Response)
	}
	return answer.Response, nil
}

func floorPath(o options) pathFunc {
	seedHex, err := os.ReadFile(o.seedFile)
	if err != nil {
		log.Fatal(err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(seedHex)))
	if err != nil || len(seed) != ed25519.SeedSize {
		log.Fatalf("%s: not a hex Ed25519 seed", o.seedFile)
	}
	key := ed25519.NewKeyFromSeed(seed)
	f := &floor{
		url:       strings.TrimRight(o.target, "/") + "/public/user",
		key:       key,
		publicHex: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			log.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			log.Fatalf("%s: no certificates", o.caFile)
		}
		f.tls = &tls.Config{RootCAs: roots}
	}
	readBody := body("GET", o.readProject, "null")
	writeBody := body("POST", o.writeProject, fmt.Sprintf(`{"title": "%s", "scopes": ["label.read"]}`, writeTitle))
	return func(op string, worker int) call {
		client := f.client(worker)
		if op == "read" {
			return func() error {
				answer, err := f.send(client, readBody)
				if err != nil {
					return err
				}
				var keys []json.RawMessage
				if err := json.Unmarshal(answer, &keys); err != nil {
					return err
				}
				if len(keys) != o.readKeys {
					return fmt.Errorf("%d keys", len(keys))
				}
				return nil
			}
		}
		return func() error {
			answer, err := f.send(client, writeBody)
			if err != nil {
				return err
			}
			var key string
			if err := json.Unmarshal(answer, &key); err != nil || key == "" {
				return errors.New("no key")
			}
			return nil
		}
	}
}

// Measurement ------------------------------------------------------------------

type record struct {
	started, finished time.Time
	ok                bool
}

type done struct {
	Event             string   `json:"event"`
	LatenciesUs       []int64  `json:"latencies_us"`
	Errors            int      `json:"errors"`
	ErrorSamples      []string `json:"error_samples"`
	CompletedInWindow int      `json:"completed_in_window"`
	WindowS           float64  `json:"window_s"`
}

func runCell(path pathFunc, c command) done {
	calls := make([]call, c.Concurrency)
	for i := range calls {
		calls[i] = path(c.Op, i)
	}
	// The driver sets the window in wall-clock time (and reads /proc at its edges);
	// adding the wait to Now keeps the monotonic clock for everything measured here.
	wallStart := time.Unix(0, int64(c.WindowStart*float64(time.Second)))
	windowStart := time.Now().Add(time.Until(wallStart))
	windowEnd := windowStart.Add(time.Duration(c.Seconds * float64(time.Second)))
	records := make([][]record, c.Concurrency)
	var (
		errMu   sync.Mutex
		samples = []string{}
		wg      sync.WaitGroup
	)
	for i := range calls {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				begin := time.Now()
				if !begin.Before(windowEnd) {
					return
				}
				err := calls[i]()
				if err != nil {
					errMu.Lock()
					if len(samples) < maxErrorSamples {
						samples = append(samples, err.Error())
					}
					errMu.Unlock()
				}
				if !begin.Before(windowStart) {
					records[i] = append(records[i], record{begin, time.Now(), err == nil})
				}
			}
		}(i)
	}
	wg.Wait()
	result := done{Event: "done", LatenciesUs: []int64{}, ErrorSamples: samples, WindowS: c.Seconds}
	for _, mine := range records {
		for _, r := range mine {
			if !r.ok {
				result.Errors++
				continue
			}
			result.LatenciesUs = append(result.LatenciesUs, r.finished.Sub(r.started).Microseconds())
			if !r.finished.After(windowEnd) {
				result.CompletedInWindow++
			}
		}
	}
	return result
}

func main() {
	var o options
	flag.StringVar(&o.path, "path", "", "gateway-go or floor-go")
	flag.StringVar(&o.target, "target", "", "the gateway's HOST:PORT, or the emulator's URL")
	flag.StringVar(&o.seedFile, "seed-file", "", "hex of the Encord user's Ed25519 seed (floor-go)")
	flag.StringVar(&o.caFile, "ca-file", "", "PEM bundle that trusts the emulator's certificate (floor-go)")
	flag.StringVar(&o.readProject, "read-project", "", "project the reads list")
	flag.StringVar(&o.writeProject, "write-project", "", "project the writes create keys in")
	flag.IntVar(&o.readKeys, "read-keys", 10, "keys a read must return")
	flag.Parse()
	var path pathFunc
	switch o.path {
	case "gateway-go":
		path = gatewayPath(o)
	case "floor-go":
		path = floorPath(o)
	default:
		log.Fatalf("unknown -path %q", o.path)
	}
	emit(map[string]string{"event": "ready"})
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		var c command
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			log.Fatal(err)
		}
		if c.Op == "quit" {
			return
		}
		emit(runCell(path, c))
	}
}
