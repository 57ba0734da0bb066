/** The gRPC listener: a list of services in, the bound port out (`127.0.0.1:0` picks a free one). */
import { Server, ServerCredentials, type ServerInterceptor, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { parseHostPort, probeListen } from "@sluice/shared/config";
import { listenError } from "@sluice/shared/errors";

export interface GrpcServiceRegistration {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface RunningGrpcServer {
  port: number;
  stop(graceMs?: number): Promise<void>;
}

export async function startGrpcServer(
  listen: string,
  services: readonly GrpcServiceRegistration[],
  o: { interceptors?: ServerInterceptor[] } = {},
): Promise<RunningGrpcServer> {
  const { host, port } = parseHostPort(listen);
  // grpc-js reports a port in use as "No address added out of total 1 resolved" (and logs it on
  // stderr itself): try the address first, so the failure names the listener and the reason
  await probeListen("control plane gRPC listener", host, port);
  const server = new Server({ "grpc.max_receive_message_length": 8 * 1024 * 1024, interceptors: o.interceptors });
  for (const s of services) server.addService(s.definition, s.implementation);
  const bound = await new Promise<number>((resolve, reject) => {
    const addr = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((e: unknown) => {
    throw listenError("control plane gRPC listener", host, port, e);
  });
  return {
    port: bound,
    stop(graceMs = 2000) {
      return new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}

