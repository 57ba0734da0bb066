// better-sqlite3 ships no types and @types/better-sqlite3 is not installed: the little the read model
// uses, declared here (kysely's SqliteDialect does the rest through its own SqliteDatabase interface).
declare module "better-sqlite3" {
  interface Database {
    pragma(source: string): unknown;
    close(): void;
  }
  interface DatabaseConstructor {
    new (filename: string, options?: { readonly?: boolean; fileMustExist?: boolean }): Database;
  }
  const Database: DatabaseConstructor;
  export default Database;
}
