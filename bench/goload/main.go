// Command goload is the benchmark's compiled load generator: the phases where a
// Python client would bound the figure (grpc.aio costs a caller 25-30 µs per
// message, so 20,000 chunks/s would need most of a core for the client alone).
//
// bench/run.py builds it (bench/goload/build.sh) and starts it as a process, as
// it starts bench/load.py, with the same modes and the same output:
//
//	open-bridge / open-direct      open loop: --concurrency paced streams (the
//	                               upstream's "rate" scenario), started evenly over
//	                               --ramp, each opened once; each stamped chunk's
//	                               latency (arrival - stamp) is recorded over the window
//	stream-bridge / stream-direct  saturation: --concurrency streams back to back, as
//	                               bench/load.py's stream modes
//
//	goload MODE --target ADDRESS --scenario JSON [--concurrency N] [--channels N]
//	       [--rpc per_event|batches] [--max-delay S] [--ramp S] [--warmup S] [--duration S]
//
// (bench/load.py's command line, so one argv builder serves both.) The window is
// --warmup seconds after the ramp, --duration long; when it ends the client cancels
// the streams still open. The client prints
// {"window": "start"} and {"window": "end"} on stdout at its edges (so run.py can
// read the servers' CPU over exactly that window), then one JSON line: count
// (chunks that arrived in the window), seconds, cpu (this process's CPU seconds in
// the window), errors, first_error, lat_ms (per stamped chunk) and lag_ms (how
// late a 10 ms sleep woke, every 10 ms of the window: this client's own lag).
//
// Stamps are wall-clock nanoseconds (the upstream's time.time_ns(), Go's
// time.Now().UnixNano()): one clock, CLOCK_REALTIME, on one machine.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	chat "myrouter.bench/goload/gen/myrouter/chat/v1"
)

const (
	model = "myrouter/echo"
	token = "bench-token" // the bench's caller token: the upstream accepts any
)

// RPCs are the bridge's streaming RPCs this client can drive; a variant of the
// open-loop and saturation phases names one (-rpc). Each returns a receive
// function giving the chunks of the next message (nil, io.EOF at the end).
var rpcs = map[string]func(context.Context, chat.ChatServiceClient, *chat.ChatCompletionRequest) (receive, error){
	"per_event": func(ctx context.Context, client chat.ChatServiceClient, request *chat.ChatCompletionRequest) (receive, error) {
		stream, err := client.StreamChatCompletion(ctx, request)
		return receiver(stream, err, func(chunk *chat.ChatCompletionChunk) []*chat.ChatCompletionChunk {
			return []*chat.ChatCompletionChunk{chunk}
		})
	},
	"batches": func(ctx context.Context, client chat.ChatServiceClient, request *chat.ChatCompletionRequest) (receive, error) {
		batches := &chat.StreamChatCompletionBatchesRequest{Request: request}
		if maxDelay > 0 {
			batches.MaxDelay = durationpb.New(time.Duration(maxDelay * float64(time.Second)))
		}
		stream, err := client.StreamChatCompletionBatches(ctx, batches)
		return receiver(stream, err, (*chat.StreamChatCompletionBatchesResponse).GetChunks)
	},
}

// receive gives the chunks of a call's next message (nil, io.EOF at its end).
type receive func() ([]*chat.ChatCompletionChunk, error)

// receiver is the receive function of a server stream (or the error that opening it
// returned): each message's chunks, as `chunks` finds them in it.
func receiver[M any, S interface{ Recv() (M, error) }](stream S, err error, chunks func(M) []*chat.ChatCompletionChunk) (receive, error) {
	if err != nil {
		return nil, err
	}
	return func() ([]*chat.ChatCompletionChunk, error) {
		message, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return chunks(message), nil
	}, nil
}

// maxDelay is -max-delay (seconds): the batches RPC's max_delay, 0 for none.
var maxDelay float64

type options struct {
	mode, target, scenario, rpc string
	concurrency, channels       int
	ramp, warmup, duration      float64
}

// recorder is one stream's share of the figures (no locks on the hot path).
type recorder struct {
	chunks  int64
	latency []float64 // ms
}

type window struct{ start, end int64 } // wall-clock ns

func (w window) has(ns int64) bool { return ns >= w.start && ns < w.end }

func (r *recorder) chunk(w window, sent string) {
	now := time.Now().UnixNano()
	if !w.has(now) {
		return
	}
	r.chunks++
	if sent == "" {
		return
	}
	if ns, err := strconv.ParseInt(sent, 10, 64); err == nil {
		r.latency = append(r.latency, float64(now-ns)/1e6)
	}
}

type failures struct {
	mu    sync.Mutex
	count int
	first string
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	if f.first == "" {
		f.first = err.Error()
		if len(f.first) > 300 {
			f.first = f.first[:300]
		}
	}
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(usage.Utime) + tv(usage.Stime)
}

func main() {
	var o options
	if len(os.Args) < 2 || os.Args[1] == "" || os.Args[1][0] == '-' {
		fmt.Fprintln(os.Stderr, "usage: goload open-bridge|open-direct|stream-bridge|stream-direct [flags]")
		os.Exit(2)
	}
	o.mode = os.Args[1]
	flag.StringVar(&o.target, "target", "", "the bridge's host:port, or the upstream's base URL")
	flag.StringVar(&o.scenario, "scenario", "{}", "the upstream scenario, JSON")
	flag.StringVar(&o.rpc, "rpc", "per_event", "the streaming RPC (bridge modes)")
	flag.Float64Var(&maxDelay, "max-delay", 0, "the batches RPC's max_delay, seconds")
	flag.IntVar(&o.concurrency, "concurrency", 1, "streams at once")
	flag.IntVar(&o.channels, "channels", 8, "gRPC connections (bridge modes)")
	flag.Float64Var(&o.ramp, "ramp", 0, "seconds over which the streams start (open modes)")
	flag.Float64Var(&o.warmup, "warmup", 0.5, "seconds after the ramp before the window")
	flag.Float64Var(&o.duration, "duration", 3, "seconds measured")
	flag.CommandLine.Parse(os.Args[2:])
	result, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goload:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}

// A stream opens, reads every chunk through `chunk`, and returns at its end.
type streamFunc func(ctx context.Context, chunk func(sent string)) error

func run(o options) (map[string]interface{}, error) {
	var scenario map[string]interface{}
	if err := json.Unmarshal([]byte(o.scenario), &scenario); err != nil {
		return nil, fmt.Errorf("--scenario: %v", err)
	}
	var open streamFunc
	var closeAll func()
	switch o.mode {
	case "open-bridge", "stream-bridge":
		call, ok := rpcs[o.rpc]
		if !ok {
			return nil, fmt.Errorf("--rpc %q: unknown", o.rpc)
		}
		var err error
		open, closeAll, err = bridgeStreams(o, scenario, call)
		if err != nil {
			return nil, err
		}
	case "open-direct", "stream-direct":
		open, closeAll = directStreams(o, scenario)
	default:
		return nil, fmt.Errorf("mode %q: unknown", o.mode)
	}
	defer closeAll()

	paced := o.mode == "open-bridge" || o.mode == "open-direct"
	ramp := time.Duration(0)
	if paced {
		ramp = time.Duration(o.ramp * float64(time.Second))
	}
	begin := time.Now()
	w := window{
		start: begin.Add(ramp + time.Duration(o.warmup*float64(time.Second))).UnixNano(),
	}
	w.end = w.start + int64(o.duration*float64(time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fails failures
	var wg sync.WaitGroup
	recorders := make([]*recorder, o.concurrency)
	for i := range recorders {
		recorders[i] = &recorder{}
	}
	var stopped int32
	for i := 0; i < o.concurrency; i++ {
		rec := recorders[i]
		due := begin.Add(time.Duration(float64(ramp) * float64(i) / float64(o.concurrency)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(due))
			for {
				err := open(ctx, func(sent string) { rec.chunk(w, sent) })
				if atomic.LoadInt32(&stopped) == 1 {
					return // ended by the client after the window: not a failure
				}
				if err != nil {
					fails.add(err)
					time.Sleep(10 * time.Millisecond)
				}
				if paced {
					return // an open-loop stream is opened once
				}
			}
		}()
	}

	ticks := make(chan []float64)
	go func() { ticks <- tickLag(w) }()

	time.Sleep(time.Until(time.Unix(0, w.start)))
	cpu0 := cpuSeconds()
	fmt.Println(`{"window": "start"}`)
	time.Sleep(time.Until(time.Unix(0, w.end)))
	cpu1 := cpuSeconds()
	fmt.Println(`{"window": "end"}`)
	atomic.StoreInt32(&stopped, 1)
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("streams did not end within 30 s of the window")
	}

	var count int64
	latency := []float64{}
	for _, rec := range recorders {
		count += rec.chunks
		latency = append(latency, rec.latency...)
	}
	return map[string]interface{}{
		"count":       count,
		"seconds":     float64(w.end-w.start) / 1e9,
		"cpu":         cpu1 - cpu0,
		"errors":      fails.count,
		"first_error": fails.first,
		"lat_ms":      latency,
		"lag_ms":      <-ticks,
	}, nil
}

// tickLag measures, over the window, how late a 10 ms sleep wakes: the time this
// process's own scheduling adds to what it measures (near 0: it kept up).
func tickLag(w window) []float64 {
	const period = 10 * time.Millisecond
	lags := []float64{}
	time.Sleep(time.Until(time.Unix(0, w.start)))
	for {
		before := time.Now()
		time.Sleep(period)
		after := time.Now()
		if after.UnixNano() >= w.end {
			return lags
		}
		lags = append(lags, float64(after.Sub(before)-period)/1e6)
	}
}

func bridgeStreams(o options, scenario map[string]interface{}, call func(context.Context, chat.ChatServiceClient, *chat.ChatCompletionRequest) (receive, error)) (streamFunc, func(), error) {
	extra, err := structpb.NewStruct(map[string]interface{}{"scenario": scenario})
	if err != nil {
		return nil, nil, err
	}
	content := "hello"
	// The request bench/load.py's bridge_request builds: bench/floor.py answers it.
	request := &chat.ChatCompletionRequest{
		Model:    model,
		Messages: []*chat.ChatMessage{{Role: "user", Content: &content}},
		Extra:    extra,
	}
	conns := make([]*grpc.ClientConn, o.channels)
	clients := make([]chat.ChatServiceClient, o.channels)
	for i := range conns {
		// WithBlock: each connection is up before the first stream (grpc-go 1.33 has
		// no credentials/insecure package; WithInsecure is its spelling). Static
		// flow-control windows, because setting them turns grpc-go's BDP estimator
		// off: it pings the server once per round trip of data, and answering those
		// pings and the small windows' updates cost the server about a third more
		// CPU per message (floor at 16 streams: 29.5 against 19.1 µs), which is the
		// client's doing, not the server's.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := grpc.DialContext(ctx, o.target, grpc.WithInsecure(), grpc.WithBlock(),
			grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(64<<20))
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %v", o.target, err)
		}
		conns[i], clients[i] = conn, chat.NewChatServiceClient(conn)
	}
	var next uint32
	open := func(ctx context.Context, chunk func(sent string)) error {
		client := clients[int(atomic.AddUint32(&next, 1))%len(clients)]
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		recv, err := call(ctx, client, request)
		if err != nil {
			return err
		}
		for {
			chunks, err := recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			for _, c := range chunks {
				chunk(c.GetSystemFingerprint())
			}
		}
	}
	closeAll := func() {
		for _, conn := range conns {
			conn.Close()
		}
	}
	return open, closeAll, nil
}

func directStreams(o options, scenario map[string]interface{}) (streamFunc, func()) {
	body, _ := json.Marshal(map[string]interface{}{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": "hello"}},
		"stream":   true,
		"scenario": scenario,
	})
	transport := &http.Transport{
		MaxIdleConns:        o.concurrency + 8,
		MaxIdleConnsPerHost: o.concurrency + 8,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport}
	url := o.target
	if url != "" && url[len(url)-1] != '/' {
		url += "/"
	}
	url += "chat/completions"
	prefix := []byte("data: ")
	done := []byte("[DONE]")
	open := func(ctx context.Context, chunk func(sent string)) error {
		request, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		request.Header.Set("content-type", "application/json")
		request.Header.Set("accept", "text/event-stream")
		request.Header.Set("authorization", "Bearer "+token)
		response, err := client.Do(request)
		if err != nil {
			return err
		}
		defer response.Body.Close()
		if response.StatusCode != 200 {
			return fmt.Errorf("HTTP %d", response.StatusCode)
		}
		// The same consumer work as the bridge's callers do: each event's JSON decoded.
		reader := bufio.NewReaderSize(response.Body, 64*1024)
		var event struct {
			SystemFingerprint string `json:"system_fingerprint"`
		}
		for {
			line, err := reader.ReadSlice('\n')
			if err != nil {
				if err == io.EOF {
					return fmt.Errorf("stream ended before [DONE]")
				}
				return err
			}
			if !bytes.HasPrefix(line, prefix) {
				continue
			}
			data := bytes.TrimSpace(line[len(prefix):])
			if bytes.Equal(data, done) {
				return nil
			}
			event.SystemFingerprint = ""
			if err := json.Unmarshal(data, &event); err != nil {
				return err
			}
			chunk(event.SystemFingerprint)
		}
	}
	return open, transport.CloseIdleConnections
}
