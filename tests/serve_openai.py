"""The real `openai` client against `wgkv serve` (run by tests/serve.rs).

Usage: serve_openai.py BASE_URL API_KEY. Prints "all checks passed" or fails
with the first check that did not hold.
"""

import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
MODEL = client.models.list().data[0].id
assert MODEL, MODEL

# Non-streaming chat: the answer, its finish reason and usage counts.
r = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0, max_tokens=24
)
c = r.choices[0]
assert r.object == "chat.completion" and c.message.role == "assistant", r
assert "Paris" in c.message.content, c.message.content
assert c.finish_reason == "stop", c.finish_reason
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage
assert 0 < r.usage.completion_tokens <= 24, r.usage

# A token limit ends with "length" after exactly that many tokens.
r = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Tell me a long story about a dragon."}], temperature=0, max_tokens=5
)
assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5, r

# Streaming: chunks in order whose text equals the non-streamed answer, usage at the end.
messages = [{"role": "user", "content": "Name three primary colors."}]
whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=20)
stream = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, max_tokens=20, stream=True, stream_options={"include_usage": True}
)
parts, finish, usage = [], None, None
for chunk in stream:
    assert chunk.object == "chat.completion.chunk", chunk
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(parts) == whole.choices[0].message.content, (parts, whole.choices[0].message.content)
assert finish == whole.choices[0].finish_reason, finish
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage

# Completions, plain and streamed.
r = client.completions.create(model=MODEL, prompt="One, two, three, four,", temperature=0, max_tokens=6)
assert r.object == "text_completion" and "five" in r.choices[0].text, r
text = "".join(ch.choices[0].text for ch in client.completions.create(model=MODEL, prompt="One, two, three, four,", temperature=0, max_tokens=6, stream=True) if ch.choices)
assert text == r.choices[0].text, (text, r.choices[0].text)

# A seed repeats a sampled answer.
kw = dict(model=MODEL, messages=[{"role": "user", "content": "Write a word."}], temperature=1.0, top_p=0.9, seed=42, max_tokens=12)
assert client.chat.completions.create(**kw).choices[0].message.content == client.chat.completions.create(**kw).choices[0].message.content

# A conversation over three requests: the second and third prefill only their new tokens.
convo = [{"role": "system", "content": "You are a terse assistant for request 7781."}, {"role": "user", "content": "What is the capital of Italy?"}]
prev = None
for turn, follow_up in enumerate(["And of Spain?", "And of Germany?", None]):
    r = client.chat.completions.create(model=MODEL, messages=convo, temperature=0, max_tokens=16)
    u = r.usage
    cached = u.prompt_tokens_details.cached_tokens
    if prev is None:
        first_cached = cached
    else:
        # Everything the previous request read (its prompt and answer but the last token) is reused.
        assert cached >= prev.prompt_tokens + prev.completion_tokens - 1, (turn, cached, prev)
        assert u.prompt_tokens - cached < 16, (turn, u)
    prev = u
    convo.append({"role": "assistant", "content": r.choices[0].message.content})
    if follow_up:
        convo.append({"role": "user", "content": follow_up})
assert first_cached < 20, first_cached  # the system message is new: only the template's start is shared

# Errors come as the client's exceptions with OpenAI's codes.
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was served")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e
try:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 2000}])
    raise AssertionError("a prompt over the context was served")
except openai.BadRequestError as e:
    assert e.code == "context_length_exceeded", e
try:
    openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was let in")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e

print("all checks passed")
