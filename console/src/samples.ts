// The Playground's request as code for the common clients, with this server's endpoint filled
// in. The key is read from AIMI_API_KEY in each sample: a sample is copied around, a key is not.

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface PlaygroundRequest {
  deployment: string;
  messages: ChatMessage[];
  temperature: number;
  top_p: number;
  max_tokens: number;
  json: boolean;
  tools: boolean;
}

export const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
} as const;

/** The JSON body aimi receives (the same on the Azure and the OpenAI surface). */
export function body(request: PlaygroundRequest, stream: boolean): Record<string, unknown> {
  return {
    model: request.deployment,
    messages: request.messages,
    temperature: request.temperature,
    top_p: request.top_p,
    max_tokens: request.max_tokens,
    ...(request.json ? { response_format: { type: "json_object" } } : {}),
    ...(request.tools ? { tools: [WEATHER_TOOL] } : {}),
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  };
}

const py = (value: unknown): string =>
  JSON.stringify(value, null, 4)
    .replace(/\btrue\b/g, "True")
    .replace(/\bfalse\b/g, "False")
    .replace(/\bnull\b/g, "None");

const indent = (text: string, by: string): string => text.split("\n").join(`\n${by}`);

export function curl(origin: string, request: PlaygroundRequest): string {
  const json = JSON.stringify(body(request, false), null, 2).replace(/'/g, "'\\''");
  return [
    `curl ${origin}/models/chat/completions \\`,
    `  -H "api-key: $AIMI_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${json}'`,
  ].join("\n");
}

export function azurePython(origin: string, request: PlaygroundRequest): string {
  const messages = request.messages.map((m) => {
    const kind = { system: "SystemMessage", user: "UserMessage", assistant: "AssistantMessage" }[m.role];
    return `        ${kind}(${JSON.stringify(m.content)}),`;
  });
  const kinds = [...new Set(request.messages.map((m) => ({ system: "SystemMessage", user: "UserMessage", assistant: "AssistantMessage" })[m.role]))].sort();
  const models = [...kinds, ...(request.tools ? ["ChatCompletionsToolDefinition", "FunctionDefinition"] : [])].sort();
  const fn = WEATHER_TOOL.function;
  return [
    "# pip install azure-ai-inference",
    "import os",
    "",
    "from azure.ai.inference import ChatCompletionsClient",
    `from azure.ai.inference.models import ${models.join(", ")}`,
    "from azure.core.credentials import AzureKeyCredential",
    "",
    "client = ChatCompletionsClient(",
    `    endpoint=${JSON.stringify(`${origin}/models`)},`,
    '    credential=AzureKeyCredential(os.environ["AIMI_API_KEY"]),',
    ")",
    "response = client.complete(",
    `    model=${JSON.stringify(request.deployment)},`,
    "    messages=[",
    ...messages,
    "    ],",
    `    temperature=${request.temperature},`,
    `    top_p=${request.top_p},`,
    `    max_tokens=${request.max_tokens},`,
    ...(request.json ? ['    response_format="json_object",'] : []),
    ...(request.tools
      ? [
          "    tools=[",
          "        ChatCompletionsToolDefinition(",
          "            function=FunctionDefinition(",
          `                name=${JSON.stringify(fn.name)},`,
          `                description=${JSON.stringify(fn.description)},`,
          `                parameters=${indent(py(fn.parameters), "                ")},`,
          "            )",
          "        )",
          "    ],",
        ]
      : []),
    ")",
    "print(response.choices[0].message.content)",
  ].join("\n");
}

export function openaiPython(origin: string, request: PlaygroundRequest): string {
  return [
    "# pip install openai",
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(`${origin}/v1`)}, api_key=os.environ["AIMI_API_KEY"])`,
    "response = client.chat.completions.create(",
    `    model=${JSON.stringify(request.deployment)},`,
    `    messages=${indent(py(request.messages), "    ")},`,
    `    temperature=${request.temperature},`,
    `    top_p=${request.top_p},`,
    `    max_tokens=${request.max_tokens},`,
    ...(request.json ? ['    response_format={"type": "json_object"},'] : []),
    ...(request.tools ? [`    tools=[${indent(py(WEATHER_TOOL), "    ")}],`] : []),
    ")",
    "print(response.choices[0].message.content)",
  ].join("\n");
}

export function javascript(origin: string, request: PlaygroundRequest): string {
  const { model: _model, ...rest } = body(request, false);
  return [
    "// npm install @azure-rest/ai-inference @azure/core-auth",
    'import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";',
    'import { AzureKeyCredential } from "@azure/core-auth";',
    "",
    `const client = ModelClient(${JSON.stringify(`${origin}/models`)}, new AzureKeyCredential(process.env.AIMI_API_KEY), {`,
    `  allowInsecureConnection: ${origin.startsWith("http://")},`,
    "});",
    'const response = await client.path("/chat/completions").post({',
    `  body: ${indent(JSON.stringify({ model: request.deployment, ...rest }, null, 2), "  ")},`,
    "});",
    "if (isUnexpected(response)) throw new Error(JSON.stringify(response.body.error));",
    "console.log(response.body.choices[0].message.content);",
  ].join("\n");
}

export const SAMPLES = [
  { id: "curl", label: "curl", render: curl },
  { id: "azure-python", label: "Python (azure-ai-inference)", render: azurePython },
  { id: "openai-python", label: "Python (openai)", render: openaiPython },
  { id: "javascript", label: "JavaScript (@azure-rest/ai-inference)", render: javascript },
] as const;
