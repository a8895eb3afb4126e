// Evaluates GitHub Actions `if:` conditions with @actions/expressions, GitHub's own parser and evaluator.
// stdin: JSON {"cases": [...]}, each case either
//   {"condition": "...", "contexts": {...}, "status": "success|failure|cancelled"}: evaluate an `if:`, answer true/false;
//   {"expression": "...", "allowed": ["github", ...]}: parse with only those contexts, answer null or the parser's error.
// stdout: JSON list of answers, one per case. GH_EXPRESSIONS_MODULE: path of the package's dist/index.js.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const moduleUrl = pathToFileURL(process.env.GH_EXPRESSIONS_MODULE);
const { Evaluator, Lexer, Parser, data } = await import(moduleUrl.href);
const { TokenType } = await import(new URL("./lexer.js", moduleUrl).href);
const { truthy } = await import(new URL("./result.js", moduleUrl).href);

// The job status functions are the runner's, not the language's: each answers for the status the test gives.
const STATUS_FUNCTIONS = ["success", "failure", "cancelled", "always"];

function statusFunctions(status) {
  const answers = { success: status === "success", failure: status === "failure", cancelled: status === "cancelled", always: true };
  return new Map(STATUS_FUNCTIONS.map((name) => [name, { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(answers[name]) }]));
}

function evaluate({ condition, contexts, status }) {
  let text = condition.trim();
  // `if:` may be written with or without ${{ }}.
  const wrapped = text.match(/^\$\{\{([\s\S]*)\}\}$/);
  if (wrapped) text = wrapped[1];
  let tokens = new Lexer(text).lex().tokens;
  // GitHub: a condition that calls no status function runs as `success() && (<condition>)`.
  const callsStatus = tokens.some((token, i) => token.type === TokenType.IDENTIFIER && tokens[i + 1]?.type === TokenType.LEFT_PAREN
    && STATUS_FUNCTIONS.includes(String(token.lexeme).toLowerCase()));
  if (!callsStatus) tokens = new Lexer("success() && (" + text + ")").lex().tokens;
  const functions = statusFunctions(status);
  const expression = new Parser(tokens, Object.keys(contexts), [...functions.values()]).parse();
  const context = JSON.parse(JSON.stringify(contexts), data.reviver);
  return truthy(new Evaluator(expression, context, functions).evaluate());
}

function parseError({ expression, allowed }) {
  try {
    new Parser(new Lexer(expression).lex().tokens, allowed, [...statusFunctions("success").values()]).parse();
    return null;
  } catch (error) {
    return String(error.message || error);
  }
}

const { cases } = JSON.parse(readFileSync(0, "utf-8"));
process.stdout.write(JSON.stringify(cases.map((c) => ("expression" in c ? parseError(c) : evaluate(c)))));
