// better-sqlite3 ships no types and @types/better-sqlite3 is not installed: the little the read model
// uses, declared here (kysely's SqliteDialect does the rest through its own SqliteDatabase interface).
declare module "better-sqlite3" {
  export interface Statement {
    /** positional parameters, or one array of them */
    run(...params: unknown[]): { changes: number };
    get(...params: unknown[]): unknown;
    all(...params: unknown[]): unknown[];
  }
  export interface Database {
    pragma(source: string): unknown;
    prepare(source: string): Statement;
    /** `fn` wrapped in BEGIN … COMMIT (ROLLBACK when it throws) */
    transaction<F extends (...args: never[]) => unknown>(fn: F): F;
    close(): void;
  }
  interface DatabaseConstructor {
    new (filename: string, options?: { readonly?: boolean; fileMustExist?: boolean }): Database;
  }
  const Database: DatabaseConstructor;
  export default Database;
}
