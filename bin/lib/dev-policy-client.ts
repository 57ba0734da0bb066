import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { PolicyServiceClient, type ApplyPolicyResponse } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";

/**
 * Applies a bundle through the control plane's PolicyService (as `sluice policy apply` does), with an
 * admin bearer token. Used by `sluice dev` at start and by the test harness.
 */
export async function applyBundleText(
  address: string,
  token: string,
  text: string,
  sourcePath = "<dev>",
  timeoutMs = 15_000,
): Promise<ApplyPolicyResponse> {
  const client = new PolicyServiceClient(address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  try {
    return await new Promise<ApplyPolicyResponse>((resolve, reject) => {
      client.apply(
        { bundleYaml: text, sourcePath, expectedRevision: 0, commandId: "" },
        md,
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, res: ApplyPolicyResponse) => (err ? reject(err) : resolve(res)),
      );
    });
  } catch (e) {
    const se = e as ServiceError;
    throw new SluiceError(se.code === 3 ? "invalid_argument" : "unavailable", `policy apply failed: ${se.details || se.message}`);
  } finally {
    client.close();
  }
}
