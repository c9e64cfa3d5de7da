// Command client calls the MyRouter gRPC bridge from Go: a unary call, a
// streamed call (several chunks per message) with metadata, the model list, and a failed call whose
// google.rpc details (ErrorInfo, RetryInfo, BadRequest) it decodes.
//
//	./build.sh                  # stubs from protos/ and the binary, into gen/ (see README.md)
//	MYROUTER_TOKEN=<your key> gen/bin/client -target 127.0.0.1:50051
//
// The token comes from the environment only (MYROUTER_TOKEN), never from a
// flag, because flags show in `ps`. The failed call asks the embedded upstream
// (`myrouter-bridge upstream`) for an HTTP 429 with Retry-After through the
// request's `extra` Struct; the real API does not know that member.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	chat "example.com/yourapp/gen/go/myrouter/chat/v1"
)

func main() {
	target := flag.String("target", envOr("BRIDGE_TARGET", "localhost:50051"), "the bridge, host:port")
	model := flag.String("model", envOr("MYROUTER_MODEL", "myrouter/echo"), "the model id")
	flag.Parse()
	if err := run(*target, *model, os.Getenv("MYROUTER_TOKEN")); err != nil {
		fmt.Fprintln(os.Stderr, describe(err, nil))
		os.Exit(1)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func run(target, model, token string) error {
	// grpc-go 1.33 (Debian 12) has no credentials/insecure package yet; newer
	// releases spell this grpc.WithTransportCredentials(insecure.NewCredentials()).
	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	client := chat.NewChatServiceClient(conn)

	// 1. Unary: the whole completion in one answer.
	ctx, cancel := withMetadata(30*time.Second, token, "")
	defer cancel()
	completion, err := client.CreateChatCompletion(ctx, chatRequest(model, "hello from go"))
	if err != nil {
		return err
	}
	fmt.Printf("unary: %s\n", completion.GetChoices()[0].GetMessage().GetContent())

	// 2. Streaming, with our own request id; print tokens as they arrive.
	if err := stream(client, model, token); err != nil {
		return err
	}

	// 3. The models the API offers.
	ctx, cancel = withMetadata(30*time.Second, token, "")
	defer cancel()
	models, err := client.ListModels(ctx, &chat.ListModelsRequest{})
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(models.GetData()))
	for _, m := range models.GetData() {
		ids = append(ids, m.GetId())
	}
	fmt.Printf("models: %s\n", strings.Join(ids, ", "))

	// 4. A failed call: the status code, message and google.rpc details. The
	// x-request-id of a call that fails before any message is in the trailer.
	failing := chatRequest(model, "hi")
	failing.Extra, err = structpb.NewStruct(map[string]interface{}{
		"scenario": map[string]interface{}{"kind": "status", "status": 429, "retry_after": "7"},
	})
	if err != nil {
		return err
	}
	var trailer metadata.MD
	ctx, cancel = withMetadata(30*time.Second, token, "")
	defer cancel()
	_, err = client.CreateChatCompletion(ctx, failing, grpc.Trailer(&trailer))
	if err == nil {
		return fmt.Errorf("expected the call with an upstream 429 to fail")
	}
	if _, isStatus := status.FromError(err); !isStatus {
		return err
	}
	fmt.Println(describe(err, trailer))
	return nil
}

// stream reads StreamChatCompletionBatches: each message holds, in order, the
// chunks that arrived together (a lone chunk leaves at once, so tokens still
// print live), for less CPU per chunk on both ends. A back-office caller that
// does not show tokens live may set MaxDelay (up to 1 s), for example
// durationpb.New(100 * time.Millisecond), for fuller messages. A bridge older
// than this RPC answers codes.Unimplemented before any message: call
// StreamChatCompletion (one chunk per message) then.
func stream(client chat.ChatServiceClient, model, token string) error {
	ctx, cancel := withMetadata(60*time.Second, token, "go-"+randomID())
	defer cancel()
	call, err := client.StreamChatCompletionBatches(ctx, &chat.StreamChatCompletionBatchesRequest{
		Request: chatRequest(model, "stream to go"),
	})
	if err != nil {
		return err
	}
	var usage *chat.Usage
	chunks, messages := 0, 0
	for {
		message, err := call.Recv()
		if err == io.EOF {
			break // the call ended OK: the API sent [DONE]
		}
		if err != nil {
			if messages > 0 {
				fmt.Println()
			}
			trailer := call.Trailer()
			return &callError{err: err, trailer: trailer}
		}
		if messages == 0 {
			header, err := call.Header()
			if err != nil {
				return err
			}
			fmt.Printf("stream x-request-id: %s\nstream: ", first(header, "x-request-id"))
		}
		messages++
		for _, chunk := range message.GetChunks() {
			chunks++
			for _, choice := range chunk.GetChoices() {
				fmt.Print(choice.GetDelta().GetContent())
			}
			if chunk.GetUsage() != nil {
				usage = chunk.GetUsage()
			}
		}
	}
	if messages > 0 {
		fmt.Println()
	}
	fmt.Printf("stream chunks: %d\n", chunks)
	fmt.Printf("stream messages: %d\n", messages)
	if usage != nil {
		fmt.Printf("usage: input %d, output %d, total %d\n",
			usage.GetInputTokens(), usage.GetOutputTokens(), usage.GetTotalTokens())
	}
	return nil
}

// callError keeps a failed stream's trailing metadata (its x-request-id) with its status.
type callError struct {
	err     error
	trailer metadata.MD
}

func (e *callError) Error() string { return e.err.Error() }

func withMetadata(timeout time.Duration, token, requestID string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if requestID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
	}
	return ctx, cancel
}

func chatRequest(model, prompt string) *chat.ChatCompletionRequest {
	content := prompt
	maxTokens := int32(100)
	return &chat.ChatCompletionRequest{
		Model:     model,
		Messages:  []*chat.ChatMessage{{Role: "user", Content: &content}},
		MaxTokens: &maxTokens,
	}
}

// describe renders a failed call as one line for the status, then one per
// decoded google.rpc detail, then the request id from the trailing metadata.
func describe(err error, trailer metadata.MD) string {
	if ce, ok := err.(*callError); ok {
		err, trailer = ce.err, ce.trailer
	}
	st, ok := status.FromError(err)
	if !ok {
		return "error: " + err.Error()
	}
	// google.rpc.Code names the codes as every other language does (codes.Code's
	// String() says "ResourceExhausted").
	lines := []string{fmt.Sprintf("error: %s (%d): %s",
		code.Code_name[int32(st.Code())], st.Code(), st.Message())}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			keys := make([]string, 0, len(d.GetMetadata()))
			for key := range d.GetMetadata() {
				keys = append(keys, key)
			}
			sort.Strings(keys) // a Go map has no order; print the same line every time
			meta := make([]string, 0, len(keys))
			for _, key := range keys {
				meta = append(meta, key+"="+d.GetMetadata()[key])
			}
			lines = append(lines, fmt.Sprintf("  ErrorInfo: reason=%s domain=%s %s",
				d.GetReason(), d.GetDomain(), strings.Join(meta, " ")))
		case *errdetails.RetryInfo:
			delay := time.Duration(d.GetRetryDelay().GetSeconds())*time.Second +
				time.Duration(d.GetRetryDelay().GetNanos())
			lines = append(lines, fmt.Sprintf("  RetryInfo: retry after %g s", delay.Seconds()))
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				lines = append(lines, fmt.Sprintf("  BadRequest: %s: %s", v.GetField(), v.GetDescription()))
			}
		case error:
			lines = append(lines, "  undecodable detail: "+d.Error())
		}
	}
	if id := first(trailer, "x-request-id"); id != "" {
		lines = append(lines, "  x-request-id: "+id)
	}
	return strings.Join(lines, "\n")
}

func first(md metadata.MD, key string) string {
	if values := md.Get(key); len(values) > 0 {
		return values[0]
	}
	return ""
}

func randomID() string {
	buf := make([]byte, 8)
	if _, err := rand.Read(buf); err != nil {
		panic(err) // the system's randomness is gone: nothing sensible is left to do
	}
	return hex.EncodeToString(buf)
}
