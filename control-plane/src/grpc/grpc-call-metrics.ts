/**
 * Counts every gRPC call the control plane answers, by method and status code, as one server
 * interceptor: unary and streaming calls alike, whichever service or helper implements them.
 */
import { ResponderBuilder, ServerInterceptingCall, status as GrpcCode, type ServerInterceptor } from "@grpc/grpc-js";
import { Counter, type Registry } from "@sluice/shared/metrics";

/** `/sluice.v1.PolicyService/Apply` → `PolicyService/Apply` */
export function methodLabel(path: string): string {
  const [service = "", method = ""] = path.replace(/^\//, "").split("/");
  return `${service.slice(service.lastIndexOf(".") + 1)}/${method}`;
}

export function grpcCallMetrics(registry: Registry): ServerInterceptor {
  const calls = new Counter({
    name: "sluice_control_grpc_calls_total",
    help: "gRPC calls answered, by method and status code",
    labelNames: ["method", "code"],
    registers: [registry],
  });
  return (descriptor, call) => {
    const method = methodLabel(descriptor.path);
    return new ServerInterceptingCall(
      call,
      new ResponderBuilder()
        .withSendStatus((st, next) => {
          calls.inc({ method, code: GrpcCode[st.code ?? GrpcCode.UNKNOWN] ?? String(st.code) });
          next(st);
        })
        .build(),
    );
  };
}
