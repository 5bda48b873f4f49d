// The code generators behind `make stubs`, pinned here so that they stay out of
// the dependency graph of the client module one directory up.
module github.com/encord-gateway/encord-gateway/client_stubs/go/tools

go 1.25.0

tool (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
