// The page's only script: asks /ask and lays the answer out with DOM nodes and textContent, never
// innerHTML, so nothing the engine returns (quotes, titles, the question itself) is read as HTML.
"use strict";

const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const button = document.getElementById("ask-button");
const tokenRow = document.getElementById("token-row");
const tokenInput = document.getElementById("token");
const errorBox = document.getElementById("error");
const result = document.getElementById("result");
let previous = null; // the last answer's question, so "how many signed it?" follows it

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function safeUrl(url) {
  // Only web links: a javascript: or data: URL in an article's metadata must not become a link.
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

function sourceLabel(source) {
  const title = source.title || `(untitled: ${source.id})`;
  const details = [source.outlet, source.date].filter(Boolean).join(", ");
  return details ? `${title} — ${details}` : title;
}

function renderSource(source) {
  const item = element("li", null, "source");
  const href = source.url ? safeUrl(source.url) : null;
  if (href) {
    const link = element("a", sourceLabel(source));
    link.href = href;
    link.rel = "noopener noreferrer nofollow";
    item.append(link);
  } else {
    item.append(element("span", sourceLabel(source)), " ", element("code", source.path));
  }
  return item;
}

function passageWithQuote(passage, quote) {
  // The passage, the quoted sentence marked where it occurs.
  const body = element("p");
  const at = passage.indexOf(quote);
  if (at < 0 || !quote) {
    body.textContent = passage;
    return body;
  }
  body.append(passage.slice(0, at), element("mark", quote), passage.slice(at + quote.length));
  return body;
}

function renderCitation(citation) {
  const item = element("li", null, "citation");
  item.id = `citation-${citation.n}`;
  item.value = citation.n;
  const quote = element("blockquote");
  quote.append(element("strong", citation.quote, "quote"));
  item.append(quote);
  const context = element("details");
  context.append(element("summary", "The passage"), passageWithQuote(citation.passage, citation.quote));
  item.append(context);
  const sources = element("ul", null, "sources");
  sources.setAttribute("aria-label", citation.sources.length > 1 ? `Reported by ${citation.sources.length} sources` : "Source");
  for (const source of citation.sources) sources.append(renderSource(source));
  item.append(sources);
  return item;
}

function renderRelated(citation) {
  const item = element("li", null, "related-item");
  const quote = element("blockquote");
  quote.append(element("span", citation.quote, "quote"));
  item.append(quote);
  const sources = element("ul", null, "sources");
  for (const source of citation.sources) sources.append(renderSource(source));
  item.append(sources);
  return item;
}

// The answer line, its answering words (the engine's answer_span) in bold, all as text nodes.
function answerWithSpan(answer, span) {
  const box = document.getElementById("answer");
  const at = span ? answer.indexOf(span.text) : -1;
  if (at < 0) {
    box.textContent = answer;
    return;
  }
  box.replaceChildren(
    document.createTextNode(answer.slice(0, at)),
    element("strong", span.text, "answer-span"),
    document.createTextNode(answer.slice(at + span.text.length)),
  );
}

function renderAnswer(data) {
  document.getElementById("asked").textContent = `You asked: ${data.question}`;
  answerWithSpan(data.answer, data.answer_span);
  const list = document.getElementById("citations");
  list.replaceChildren(...data.citations.map(renderCitation));
  // A declined question's closest passages: apart from the answer, never numbered like citations.
  const related = data.related || [];
  const relatedList = document.getElementById("related-list");
  relatedList.replaceChildren(...related.map(renderRelated));
  document.getElementById("related").hidden = related.length === 0;
  result.dataset.abstained = String(data.abstained);
  result.hidden = false;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

async function ask(question) {
  const headers = { "Content-Type": "application/json" };
  if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
  const body = { question }; // k: the server's default (PROTEST_BOT_TOP_K)
  if (previous) body.previous = previous;
  const response = await fetch("/ask", { method: "POST", headers, body: JSON.stringify(body) });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (response.status === 401) {
    tokenRow.hidden = false;
    tokenInput.focus();
  }
  if (!response.ok) {
    throw new Error((data && data.detail) || `The server answered ${response.status}.`);
  }
  return data;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question) {
    showError("Type a question first.");
    return;
  }
  showError("");
  button.disabled = true;
  result.setAttribute("aria-busy", "true");
  try {
    const data = await ask(question);
    renderAnswer(data);
    // What the answer searched (a follow-up read with the question before), so a follow-up of a
    // follow-up is read as the CLI and Telegram read it.
    previous = { question: data.question, query: data.query };
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
    result.setAttribute("aria-busy", "false");
  }
});
