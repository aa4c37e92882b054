// Findings: the waste findings of the last 30 days, each with its estimated monthly saving and its evidence.
import { get } from "../api.js";
import { h, replace, usd } from "../dom.js";

function evidence(value) {
  return h("dl", {}, Object.entries(value).flatMap(([k, v]) => [
    h("dt", {}, k),
    h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)),
  ]));
}

export default async function findings(main) {
  const answer = await get("/v1/findings");
  replace(
    main,
    h("h1", {}, "Findings"),
    h("p", {}, `${answer.start} to ${answer.end}: estimated saving `,
      h("strong", { "data-figure": "saving" }, usd(answer.total_estimated_monthly_saving_usd)), " per month."),
    answer.findings.length === 0
      ? h("p", { class: "muted" }, "No waste found over these days.")
      : answer.findings.map((f) =>
          h("article", { class: "card" },
            h("h2", {}, f.title),
            h("p", {}, `${f.kind}: saves about ${usd(f.estimated_monthly_saving_usd)} per month.`),
            h("details", {}, h("summary", {}, "Evidence"), evidence(f.evidence)))),
  );
}
