# frozen_string_literal: true

# Calling the MyRouter gRPC bridge from Ruby with the grpc gem: a unary call, a
# streamed call with metadata, and a failed call whose status details are decoded.
#
#   make ruby-example            # generates gen/ from protos/ (see the Makefile)
#   MYROUTER_TOKEN=<your key> ruby client.rb [host:port]
#
# Environment: BRIDGE_TARGET (default localhost:50051), MYROUTER_TOKEN (sent as
# the authorization metadata), MYROUTER_MODEL (default myrouter/echo).

$LOAD_PATH.unshift(File.join(__dir__, 'gen'))

require 'securerandom'
require 'grpc'
require 'google/protobuf/well_known_types' # Any#unpack
require 'google/rpc/error_details_pb'
require 'myrouter/chat/v1/chat_services_pb'

Chat = Myrouter::Chat::V1
CODE_NAMES = GRPC::Core::StatusCodes.constants.to_h { |c| [GRPC::Core::StatusCodes.const_get(c), c] }

def call_metadata(token, request_id = nil)
  metadata = {}
  metadata['authorization'] = "Bearer #{token}" unless token.empty?
  metadata['x-request-id'] = request_id if request_id
  metadata
end

def chat_request(model, prompt)
  Chat::ChatCompletionRequest.new(
    model: model,
    messages: [Chat::ChatMessage.new(role: 'user', content: prompt)],
    max_tokens: 100
  )
end

# One line for the status, then one per decoded google.rpc detail.
def describe_error(err)
  lines = ["error: #{CODE_NAMES.fetch(err.code, err.code)} (#{err.code}): #{err.details}"]
  status = err.to_rpc_status
  (status ? status.details : []).each do |any|
    if (info = any.unpack(Google::Rpc::ErrorInfo))
      meta = info.metadata.map { |k, v| "#{k}=#{v}" }.join(' ')
      lines << "  ErrorInfo: reason=#{info.reason} domain=#{info.domain} #{meta}"
    elsif (retry_info = any.unpack(Google::Rpc::RetryInfo))
      delay = retry_info.retry_delay
      lines << "  RetryInfo: retry after #{delay.seconds + delay.nanos / 1e9} s"
    elsif (bad = any.unpack(Google::Rpc::BadRequest))
      bad.field_violations.each { |v| lines << "  BadRequest: #{v.field}: #{v.description}" }
    end
  end
  request_id = err.metadata['x-request-id']
  lines << "  x-request-id: #{request_id}" if request_id
  lines.join("\n")
end

def main
  target = ARGV[0] || ENV.fetch('BRIDGE_TARGET', 'localhost:50051')
  token = ENV.fetch('MYROUTER_TOKEN', '')
  model = ENV.fetch('MYROUTER_MODEL', 'myrouter/echo')
  stub = Chat::ChatService::Stub.new(target, :this_channel_is_insecure)

  # 1. Unary: the whole completion in one answer.
  completion = stub.create_chat_completion(
    chat_request(model, 'hello from ruby'), metadata: call_metadata(token), deadline: Time.now + 30
  )
  puts "unary: #{completion.choices[0].message.content}"

  # 2. Streaming, with our own request id; print tokens as they arrive.
  op = stub.stream_chat_completion(
    chat_request(model, 'stream to ruby'),
    metadata: call_metadata(token, "ruby-#{SecureRandom.uuid}"),
    deadline: Time.now + 60,
    return_op: true
  )
  usage = nil
  started = false
  op.execute.each do |chunk|
    unless started
      puts "stream x-request-id: #{op.metadata['x-request-id']}"
      print 'stream: '
      started = true
    end
    chunk.choices.each { |choice| print choice.delta.content if choice.delta.has_content? }
    $stdout.flush
    usage = chunk.usage if chunk.usage
  end
  puts if started
  puts "usage: input #{usage.input_tokens}, output #{usage.output_tokens}, total #{usage.total_tokens}" if usage

  # 3. A failed call: the status code, message and google.rpc details.
  begin
    stub.create_chat_completion(
      chat_request('no-such/model', 'hi'), metadata: call_metadata(token), deadline: Time.now + 30
    )
    warn 'expected the call with an unknown model to fail'
    return 1
  rescue GRPC::BadStatus => e
    puts describe_error(e)
  end
  0
rescue GRPC::BadStatus => e
  warn describe_error(e)
  1
end

exit(main)
