/**
 * Reads the server's answer to a query the pool itself sends on an idle connection (the reset,
 * `DISCARD ALL`, or the health check, an empty query) and says whether the connection came out of
 * it provably clean: every message is one a finished utility statement may produce, no error, and a
 * ReadyForQuery with status 'I' as the last message. The settings the server reports meanwhile
 * (RESET ALL reports those a session had changed) replace the ones the next session will be told.
 * Pure: frames in, verdict out.
 */
import { B } from "../wire/codes.js";
import { decodeErrorFields, decodeParameterStatus, decodeReadyForQuery } from "../wire/decode.js";
import { pinnedSettingViolation } from "../session/pinned-settings.js";

export type AnswerVerdict = { state: "more" } | { state: "clean" } | { state: "dirty"; why: string };

export class ServerAnswer {
  private verdict: AnswerVerdict = { state: "more" };
  /** the settings as the server reports them now, one ParameterStatus frame per name */
  readonly parameterStatus: Buffer[];

  constructor(parameterStatus: readonly Buffer[]) {
    this.parameterStatus = [...parameterStatus];
  }

  /** one backend frame; once the verdict is not `more`, any further frame makes it dirty */
  frame(code: number, raw: Buffer): AnswerVerdict {
    if (this.verdict.state !== "more") return (this.verdict = { state: "dirty", why: "the server sent more after ReadyForQuery" });
    switch (code) {
      // a resource's resetQuery may be a SELECT (pg_advisory_unlock_all()): its rows go nowhere
      case B.RowDescription:
      case B.DataRow:
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.NoticeResponse:
      // a notification of the previous session's LISTEN that was on its way: it goes nowhere
      case B.NotificationResponse:
        return this.verdict;
      case B.ParameterStatus: {
        const { name, value } = decodeParameterStatus(raw);
        const why = pinnedSettingViolation(name, value);
        if (why !== undefined) return (this.verdict = { state: "dirty", why });
        const i = this.parameterStatus.findIndex((f) => decodeParameterStatus(f).name === name);
        if (i >= 0) this.parameterStatus[i] = Buffer.from(raw);
        else this.parameterStatus.push(Buffer.from(raw));
        return this.verdict;
      }
      case B.ErrorResponse: {
        const e = decodeErrorFields(raw);
        return (this.verdict = { state: "dirty", why: `the server answered ${e.C ?? "an error"}` });
      }
      case B.ReadyForQuery: {
        const status = decodeReadyForQuery(raw);
        return (this.verdict = status === "I" ? { state: "clean" } : { state: "dirty", why: `transaction status '${status}' after the reset` });
      }
      default:
        return (this.verdict = { state: "dirty", why: `unexpected message '${String.fromCharCode(code)}'` });
    }
  }
}
