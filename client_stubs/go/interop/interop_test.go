// Package interop_test calls every RPC of a running encord-gateway through the
// generated Go stubs. client_stubs/interop.sh runs it under the repo's dev stack
// (python -m encord_gateway.devstack), which sets ENCORD_GATEWAY_ADDRESS,
// ENCORD_DEMO_PROJECT and ENCORD_DEMO_DATASET.
package interop_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	v1 "github.com/encord-gateway/encord-gateway/client_stubs/go/encordgatewayv1"
)

type gateway struct {
	client  v1.ApiKeyServiceClient
	project string
	dataset string
}

// connect skips the test when no gateway is configured, unless
// ENCORD_INTEROP_REQUIRED is set (as interop.sh does), where that is a failure.
func connect(t *testing.T) *gateway {
	t.Helper()
	env := map[string]string{}
	for _, name := range []string{"ENCORD_GATEWAY_ADDRESS", "ENCORD_DEMO_PROJECT", "ENCORD_DEMO_DATASET"} {
		env[name] = os.Getenv(name)
		if env[name] == "" {
			if os.Getenv("ENCORD_INTEROP_REQUIRED") != "" {
				t.Fatalf("%s is not set", name)
			}
			t.Skipf("%s is not set: run under `python -m encord_gateway.devstack`", name)
		}
	}
	conn, err := grpc.NewClient(env["ENCORD_GATEWAY_ADDRESS"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &gateway{v1.NewApiKeyServiceClient(conn), env["ENCORD_DEMO_PROJECT"], env["ENCORD_DEMO_DATASET"]}
}

// ctx carries a deadline and, where the gateway is set up with caller tokens, one of them.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	if token := os.Getenv("ENCORD_GATEWAY_TOKEN"); token != "" {
		c = metadata.AppendToOutgoingContext(c, "authorization", "Bearer "+token)
	}
	return c
}

func fingerprint(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])[:16]
}

func sorted[S ~[]E, E ~int32](s S) S {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

var allProjectScopes = []v1.ApiKeyScope{
	v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ, v1.ApiKeyScope_API_KEY_SCOPE_LABEL_WRITE,
	v1.ApiKeyScope_API_KEY_SCOPE_MODEL_INFERENCE, v1.ApiKeyScope_API_KEY_SCOPE_MODEL_TRAIN,
	v1.ApiKeyScope_API_KEY_SCOPE_LABEL_LOGS_READ, v1.ApiKeyScope_API_KEY_SCOPE_ALGO_LIBRARY,
}

var allDatasetScopes = []v1.DatasetScope{v1.DatasetScope_DATASET_SCOPE_READ, v1.DatasetScope_DATASET_SCOPE_WRITE}

func TestProjectKeys(t *testing.T) {
	g := connect(t)
	title := fmt.Sprintf("go interop %d", time.Now().UnixNano())
	scopes := []v1.ApiKeyScope{v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ, v1.ApiKeyScope_API_KEY_SCOPE_LABEL_WRITE}

	created, err := g.client.CreateProjectApiKey(ctx(t), &v1.CreateProjectApiKeyRequest{
		ProjectHash: g.project, Title: title, Scopes: scopes,
	})
	if err != nil {
		t.Fatalf("CreateProjectApiKey: %v", err)
	}
	if created.GetApiKey() == "" {
		t.Fatal("CreateProjectApiKey: empty api_key")
	}
	if created.GetTitle() != title || created.GetProjectHash() != g.project {
		t.Errorf("CreateProjectApiKey = (%q, %q), want (%q, %q)", created.GetTitle(), created.GetProjectHash(), title, g.project)
	}
	if got := sorted(created.GetScopes()); !slices.Equal(got, scopes) {
		t.Errorf("CreateProjectApiKey scopes = %v, want %v", got, scopes)
	}
	if want := fingerprint(created.GetApiKey()); created.GetFingerprint() != want {
		t.Errorf("fingerprint = %q, want %q", created.GetFingerprint(), want)
	}

	list, err := g.client.ListProjectApiKeys(ctx(t), &v1.ListProjectApiKeysRequest{ProjectHash: g.project})
	if err != nil {
		t.Fatalf("ListProjectApiKeys: %v", err)
	}
	i := slices.IndexFunc(list.GetApiKeys(), func(k *v1.ProjectApiKey) bool { return k.GetFingerprint() == created.GetFingerprint() })
	if i < 0 {
		t.Fatalf("ListProjectApiKeys: %d keys, none with fingerprint %s", len(list.GetApiKeys()), created.GetFingerprint())
	}
	if k := list.GetApiKeys()[i]; k.GetTitle() != title || !slices.Equal(sorted(k.GetScopes()), scopes) || k.GetProjectHash() != g.project {
		t.Errorf("listed key = (%q, %v, %q), want (%q, %v, %q)", k.GetTitle(), k.GetScopes(), k.GetProjectHash(), title, scopes, g.project)
	}

	first, err := g.client.GetOrCreateProjectApiKey(ctx(t), &v1.GetOrCreateProjectApiKeyRequest{ProjectHash: g.project})
	if err != nil {
		t.Fatalf("GetOrCreateProjectApiKey: %v", err)
	}
	second, err := g.client.GetOrCreateProjectApiKey(ctx(t), &v1.GetOrCreateProjectApiKeyRequest{ProjectHash: g.project})
	if err != nil {
		t.Fatalf("GetOrCreateProjectApiKey again: %v", err)
	}
	if first.GetApiKey() == "" || first.GetApiKey() != second.GetApiKey() {
		t.Errorf("GetOrCreateProjectApiKey twice gave fingerprints %q and %q, want one non-empty key", first.GetFingerprint(), second.GetFingerprint())
	}
	if got := sorted(first.GetScopes()); !slices.Equal(got, allProjectScopes) {
		t.Errorf("master key scopes = %v, want %v", got, allProjectScopes)
	}
	if first.GetProjectHash() != g.project || first.GetFingerprint() != fingerprint(first.GetApiKey()) {
		t.Errorf("master key = (%q, %q), want project %q and the key's fingerprint", first.GetProjectHash(), first.GetFingerprint(), g.project)
	}
}

func TestDatasetKeys(t *testing.T) {
	g := connect(t)
	title := fmt.Sprintf("go interop %d", time.Now().UnixNano())
	scopes := []v1.DatasetScope{v1.DatasetScope_DATASET_SCOPE_READ}

	created, err := g.client.CreateDatasetApiKey(ctx(t), &v1.CreateDatasetApiKeyRequest{
		DatasetHash: g.dataset, Title: title, Scopes: scopes,
	})
	if err != nil {
		t.Fatalf("CreateDatasetApiKey: %v", err)
	}
	if created.GetApiKey() == "" || created.GetKeyHash() == "" {
		t.Fatalf("CreateDatasetApiKey: api_key or key_hash empty (key_hash %q)", created.GetKeyHash())
	}
	if created.GetTitle() != title || created.GetDatasetHash() != g.dataset {
		t.Errorf("CreateDatasetApiKey = (%q, %q), want (%q, %q)", created.GetTitle(), created.GetDatasetHash(), title, g.dataset)
	}
	if got := sorted(created.GetScopes()); !slices.Equal(got, scopes) {
		t.Errorf("CreateDatasetApiKey scopes = %v, want %v", got, scopes)
	}
	if want := fingerprint(created.GetApiKey()); created.GetFingerprint() != want {
		t.Errorf("fingerprint = %q, want %q", created.GetFingerprint(), want)
	}

	list, err := g.client.ListDatasetApiKeys(ctx(t), &v1.ListDatasetApiKeysRequest{DatasetHash: g.dataset})
	if err != nil {
		t.Fatalf("ListDatasetApiKeys: %v", err)
	}
	i := slices.IndexFunc(list.GetApiKeys(), func(k *v1.DatasetApiKey) bool { return k.GetKeyHash() == created.GetKeyHash() })
	if i < 0 {
		t.Fatalf("ListDatasetApiKeys: %d keys, none with key_hash %s", len(list.GetApiKeys()), created.GetKeyHash())
	}
	if k := list.GetApiKeys()[i]; k.GetTitle() != title || !slices.Equal(sorted(k.GetScopes()), scopes) || k.GetDatasetHash() != g.dataset {
		t.Errorf("listed key = (%q, %v, %q), want (%q, %v, %q)", k.GetTitle(), k.GetScopes(), k.GetDatasetHash(), title, scopes, g.dataset)
	}

	first, err := g.client.GetOrCreateDatasetApiKey(ctx(t), &v1.GetOrCreateDatasetApiKeyRequest{DatasetHash: g.dataset})
	if err != nil {
		t.Fatalf("GetOrCreateDatasetApiKey: %v", err)
	}
	second, err := g.client.GetOrCreateDatasetApiKey(ctx(t), &v1.GetOrCreateDatasetApiKeyRequest{DatasetHash: g.dataset})
	if err != nil {
		t.Fatalf("GetOrCreateDatasetApiKey again: %v", err)
	}
	if first.GetApiKey() == "" || first.GetApiKey() != second.GetApiKey() || first.GetKeyHash() != second.GetKeyHash() {
		t.Errorf("GetOrCreateDatasetApiKey twice gave key_hash %q and %q, want one key", first.GetKeyHash(), second.GetKeyHash())
	}
	if got := sorted(first.GetScopes()); !slices.Equal(got, allDatasetScopes) {
		t.Errorf("master key scopes = %v, want %v", got, allDatasetScopes)
	}
}

func TestEmptyProjectHashIsInvalidArgument(t *testing.T) {
	g := connect(t)
	_, err := g.client.CreateProjectApiKey(ctx(t), &v1.CreateProjectApiKeyRequest{
		ProjectHash: "", Title: "go interop", Scopes: []v1.ApiKeyScope{v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ},
	})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v (%v), want InvalidArgument", st.Code(), err)
	}
	var violations []string
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				violations = append(violations, v.GetField())
			}
		case *errdetails.ErrorInfo:
			info = d
		case error:
			t.Errorf("undecodable detail: %v", d)
		}
	}
	if !slices.Contains(violations, "project_hash") {
		t.Errorf("BadRequest field violations = %v, want one for project_hash", violations)
	}
	if info == nil || info.GetDomain() != "encord-gateway" || info.GetReason() == "" {
		t.Errorf("ErrorInfo = %v, want domain encord-gateway and a reason", info)
	}
}
