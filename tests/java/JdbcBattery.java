// JDBC battery (pgjdbc, the PostgreSQL JDBC driver): the extended query protocol as Java
// applications and their connection pools use it. Run by tests/clients_jdbc.rs once directly
// and once through pgshape:
//
//   java -cp /usr/share/java/postgresql.jar tests/java/JdbcBattery.java HOST PORT DB USER PASSWORD
//
// Prints {"battery", "results", "expect"} like the Python batteries (tests/python/battery_common.py):
// `results` must be identical both ways; `expect` lists each statement the battery knows it ran
// (found by a marker comment inside its SQL) with the server's command tag and row count.
//
// What pgjdbc does on the wire, exercised here: every statement is Parse/Bind/Execute (unnamed
// statements, then a named server-side statement once a PreparedStatement ran prepareThreshold
// = 5 times), batches are pipelined Bind/Execute pairs behind one Sync, setFetchSize inside a
// transaction runs a portal in chunks (Execute with a row limit, PortalSuspended), a query
// timeout sends a CancelRequest on a second connection, and CopyManager speaks COPY (as a
// simple Query).

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.postgresql.copy.CopyManager;
import org.postgresql.core.BaseConnection;

public class JdbcBattery {
    private final Map<String, Object> results = new LinkedHashMap<>();
    private final List<Map<String, Object>> expect = new ArrayList<>();

    void result(String key, Object value) {
        if (results.put(key, value) != null) {
            throw new IllegalStateException("duplicate result key " + key);
        }
    }

    /** The statement containing `marker` ran once, answered with this tag and row count. */
    void ran(String marker, String command, long rows, String sqlstate, String protocol) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("match", marker);
        e.put("command", command);
        e.put("rows", rows);
        e.put("sqlstate", sqlstate);
        e.put("protocol", protocol);
        expect.add(e);
    }

    void ran(String marker, String command, long rows, String sqlstate) {
        ran(marker, command, rows, sqlstate, "extended");
    }

    void ran(String marker, String command, long rows) {
        ran(marker, command, rows, null);
    }

    static List<Object> rows(ResultSet rs) throws SQLException {
        List<Object> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(rs.getString(i));
            }
            out.add(row);
        }
        return out;
    }

    void run(Connection conn) throws Exception {
        result("server_version_num_ok", conn.getMetaData().getDatabaseMajorVersion() >= 12);
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE /*j:create*/ j_items (id int PRIMARY KEY, name text, "
                    + "price numeric(10,2), data bytea, tags text[], at timestamptz)");
            ran("/*j:create*/", "CREATE TABLE", 0);
            st.execute("SET TIME ZONE 'UTC'");
        }

        // A PreparedStatement run 8 times: unnamed statements first, then (prepareThreshold 5)
        // a named server-side statement that later executions only Bind and Execute.
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT /*j:insert*/ INTO j_items VALUES (?, ?, ?, ?, ?::text[], ?::timestamptz)")) {
            for (int i = 1; i <= 8; i++) {
                ps.setInt(1, i);
                ps.setString(2, i == 3 ? "quote ' and \\ unicodé ☃" : "item " + i);
                ps.setBigDecimal(3, new BigDecimal(i + ".25"));
                ps.setBytes(4, new byte[] {0, (byte) i, (byte) 0xff});
                ps.setString(5, "{a,b" + i + "}");
                ps.setString(6, "2024-01-0" + (i % 9 + 1) + " 03:04:05+00");
                result("insert_" + i, ps.executeUpdate());
                ran("/*j:insert*/", "INSERT", 1);
            }
        }

        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT /*j:select*/ id, name, price, data, tags, at FROM j_items WHERE id <= ? ORDER BY id")) {
            ps.setInt(1, 8);
            try (ResultSet rs = ps.executeQuery()) {
                result("select", rows(rs));
            }
            ran("/*j:select*/", "SELECT", 8);
        }

        // A batch: 50 Bind/Execute pairs pipelined behind one Sync.
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT /*j:batch*/ INTO j_items (id, name) VALUES (?, ?)")) {
            for (int i = 100; i < 150; i++) {
                ps.setInt(1, i);
                ps.setString(2, "batch " + i);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            result("batch_counts", counts.length);
            for (int i = 0; i < counts.length; i++) {
                ran("/*j:batch*/", "INSERT", 1);
            }
        }

        // A failing batch: the server skips the rest of the pipeline up to the Sync.
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT /*j:dup*/ INTO j_items (id, name) VALUES (?, 'dup')")) {
            ps.setInt(1, 200);
            ps.addBatch();
            ps.setInt(1, 1); // duplicate key
            ps.addBatch();
            ps.setInt(1, 201);
            ps.addBatch();
            try {
                ps.executeBatch();
                result("dup_batch", "no error");
            } catch (BatchUpdateException e) {
                result("dup_batch", e.getSQLState());
            }
            // Autocommit: the batch ran in one implicit transaction, rolled back as a whole.
            ran("/*j:dup*/", "INSERT", 1);
            ran("/*j:dup*/", "", 0, "23505");
        }

        // Several statements in one execute(): one Parse/Bind/Execute each, one Sync.
        try (Statement st = conn.createStatement()) {
            st.execute("UPDATE /*j:multi_update*/ j_items SET price = price * 2 WHERE id <= 2; "
                    + "SELECT /*j:multi_select*/ count(*) FROM j_items");
            result("multi_update_count", st.getUpdateCount());
            st.getMoreResults();
            try (ResultSet rs = st.getResultSet()) {
                result("multi_select", rows(rs));
            }
            ran("/*j:multi_update*/", "UPDATE", 2);
            ran("/*j:multi_select*/", "SELECT", 1);
        }

        // A cursor-style read: inside a transaction, setFetchSize runs the portal 25 rows at a
        // time (Execute with a limit, PortalSuspended until the last chunk).
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT /*j:fetch*/ g, md5(g::text) FROM generate_series(1, 100) g ORDER BY g")) {
            ps.setFetchSize(25);
            long n = 0;
            StringBuilder digest = new StringBuilder();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    n++;
                    if (n % 25 == 0) {
                        digest.append(rs.getString(2), 0, 6).append(' ');
                    }
                }
            }
            result("fetch_rows", n);
            result("fetch_digest", digest.toString().trim());
            for (int i = 0; i < 4; i++) {
                ran("/*j:fetch*/", "", 25);
            }
            // The fifth Execute finds the portal exhausted: SELECT with no further row.
            ran("/*j:fetch*/", "SELECT", 0);
        }
        // An error inside the transaction, then rollback.
        try (Statement st = conn.createStatement()) {
            try {
                st.execute("SELECT /*j:div0*/ 1/0");
            } catch (SQLException e) {
                result("div0", e.getSQLState());
            }
            ran("/*j:div0*/", "", 0, "22012");
        }
        conn.rollback();
        conn.setAutoCommit(true);

        // Generated keys: pgjdbc appends RETURNING to the statement.
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE /*j:serial*/ j_serial (id serial PRIMARY KEY, v text)");
            ran("/*j:serial*/", "CREATE TABLE", 0);
        }
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT /*j:keys*/ INTO j_serial (v) VALUES (?)", Statement.RETURN_GENERATED_KEYS)) {
            ps.setString(1, "x");
            ps.executeUpdate();
            try (ResultSet rs = ps.getGeneratedKeys()) {
                result("generated_keys", rows(rs));
            }
            ran("/*j:keys*/", "INSERT", 1);
        }

        // COPY both ways through CopyManager, which sends COPY as a simple Query.
        CopyManager copy = conn.unwrap(BaseConnection.class).getCopyAPI();
        StringBuilder csv = new StringBuilder();
        for (int i = 1000; i < 2000; i++) {
            csv.append(i).append(",copied ").append(i).append('\n');
        }
        long copiedIn = copy.copyIn("COPY /*j:copy_in*/ j_items (id, name) FROM STDIN (FORMAT csv)",
                new StringReader(csv.toString()));
        result("copy_in", copiedIn);
        ran("/*j:copy_in*/", "COPY", 1000, null, "simple");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        long copiedOut = copy.copyOut("COPY /*j:copy_out*/ (SELECT id, name FROM j_items WHERE id >= 1000 ORDER BY id) TO STDOUT", out);
        result("copy_out", copiedOut);
        result("copy_out_bytes", out.toString(StandardCharsets.UTF_8).length());
        ran("/*j:copy_out*/", "COPY", 1000, null, "simple");

        // A query timeout: pgjdbc cancels from a second connection (CancelRequest).
        try (Statement st = conn.createStatement()) {
            st.setQueryTimeout(1);
            try {
                st.execute("SELECT /*j:timeout*/ pg_sleep(30)");
                result("timeout", "no error");
            } catch (SQLException e) {
                result("timeout", e.getSQLState());
            }
            ran("/*j:timeout*/", "", 0, "57014");
        }
        // The connection is still usable after the cancel.
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(
                "SELECT /*j:after*/ count(*) FROM j_items")) {
            result("after_cancel", rows(rs));
            ran("/*j:after*/", "SELECT", 1);
        }
        // Destructive statements that the shipped rule update-or-delete-without-where flags:
        // they run exactly as they would directly, because no shipped rule acts unless asked.
        try (PreparedStatement ps = conn.prepareStatement(
                "UPDATE /*j:update_all*/ j_items SET price = price * ?")) {
            ps.setInt(1, 2);
            int n = ps.executeUpdate();
            result("update_all", n);
            ran("/*j:update_all*/", "UPDATE", n);
        }
        try (Statement st = conn.createStatement()) {
            int n = st.executeUpdate("DELETE /*j:delete_all*/ FROM j_items");
            result("delete_all", n);
            ran("/*j:delete_all*/", "DELETE", n);
        }
    }

    // ---------------------------------------------------------------- JSON out, no library

    static void json(StringBuilder b, Object v) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof String s) {
            b.append('"');
            for (char c : s.toCharArray()) {
                switch (c) {
                    case '"' -> b.append("\\\"");
                    case '\\' -> b.append("\\\\");
                    case '\n' -> b.append("\\n");
                    case '\r' -> b.append("\\r");
                    case '\t' -> b.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            b.append(String.format("\\u%04x", (int) c));
                        } else {
                            b.append(c);
                        }
                    }
                }
            }
            b.append('"');
        } else if (v instanceof Number || v instanceof Boolean) {
            b.append(v);
        } else if (v instanceof Map<?, ?> m) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    b.append(',');
                }
                first = false;
                json(b, String.valueOf(e.getKey()));
                b.append(':');
                json(b, e.getValue());
            }
            b.append('}');
        } else if (v instanceof List<?> l) {
            b.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) {
                    b.append(',');
                }
                json(b, l.get(i));
            }
            b.append(']');
        } else {
            json(b, v.toString());
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        Properties props = new Properties();
        props.setProperty("user", args[3]);
        if (args.length > 4 && !args[4].isEmpty()) {
            props.setProperty("password", args[4]);
        }
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        JdbcBattery battery = new JdbcBattery();
        try (Connection conn = DriverManager.getConnection(url, props)) {
            battery.run(conn);
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("battery", "pgjdbc");
        doc.put("results", battery.results);
        doc.put("expect", battery.expect);
        StringBuilder b = new StringBuilder();
        json(b, doc);
        System.out.println(b);
    }
}
