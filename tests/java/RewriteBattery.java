// pgjdbc and the incident rewrite (tests/clients_rewrite.rs): the incident's list query and
// Django's `.distinct().count()` as a Java application sends them, directly and through
// pgshape, which rewrites them into EXISTS once proven:
//
//   java -cp /usr/share/java/postgresql.jar tests/java/RewriteBattery.java \
//       DB USER PASSWORD DIRECT_HOST:PORT PROXIED_HOST:PORT ADMIN_HOST:PORT FP_INCIDENT FP_COUNT
//
// PreparedStatements with `?` (pgjdbc sends `$n`): an unnamed statement parsed at each of the
// first prepareThreshold - 1 = 4 executions, then a named server-side statement (Parse once,
// then Bind/Execute); plus a plain Statement with literals. Like the Python rewrite batteries
// (tests/python/rewrite_common.py): each shape runs once through pgshape so its proof starts,
// the admin API is polled until both rewrites are ready, then the measured executions run on
// new connections. Prints `results` per side (rows, ResultSetMetaData, ParameterMetaData: must
// be identical), `server_ran` (pg_stat_activity.query after each execution), `sent` and
// `executions`.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.postgresql.PGStatement;

public class RewriteBattery {
    static final String RULE = "distinct-over-fanout-join";
    static final String COLUMNS = "\"shop_order\".\"id\", \"shop_order\".\"customer_id\", "
            + "\"shop_order\".\"status\", \"shop_order\".\"created_at\"";
    static final String COUNT_COLUMNS = "\"shop_order\".\"id\" AS \"col1\", "
            + "\"shop_order\".\"customer_id\" AS \"col2\", \"shop_order\".\"status\" AS \"col3\", "
            + "\"shop_order\".\"created_at\" AS \"col4\"";
    static final String FROM = " FROM \"shop_order\" INNER JOIN \"shop_orderitem\" ON "
            + "(\"shop_order\".\"id\" = \"shop_orderitem\".\"order_id\") WHERE "
            + "\"shop_orderitem\".\"sku\" IN (%s)";

    /** The incident's SQL (Django 5.2) with this IN list and LIMIT text. */
    static String incident(String list, String limit) {
        return "SELECT DISTINCT " + COLUMNS + String.format(FROM, list)
                + " ORDER BY \"shop_order\".\"created_at\" DESC LIMIT " + limit;
    }

    static String count(String list) {
        return "SELECT COUNT(*) FROM (SELECT DISTINCT " + COUNT_COLUMNS + String.format(FROM, list)
                + ") subquery";
    }

    static String marks(int n) {
        return String.join(", ", java.util.Collections.nCopies(n, "?"));
    }

    static String dollars(int n) {
        List<String> out = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            out.add("$" + i);
        }
        return String.join(", ", out);
    }

    static String literals(String[] skus) {
        List<String> out = new ArrayList<>();
        for (String s : skus) {
            out.add("'" + s + "'");
        }
        return String.join(", ", out);
    }

    // SKU lists by length, with limits; every case returns rows (Z never occurs).
    static final String[][] PAIRS = {{"A", "B"}, {"C", "D"}, {"E", "F"}, {"B", "Z"}, {"A", "F"},
        {"D", "E"}, {"C", "A"}};
    static final int[] PAIR_LIMITS = {25, 10, 100, 3, 400, 7, 50};
    static final String[][] SINGLES = {{"C"}, {"F"}, {"A"}};
    static final int[] SINGLE_LIMITS = {10, 400, 5};
    static final String[][] FOURS = {{"A", "D", "E", "F"}, {"Z", "B", "C", "D"}};
    static final int[] FOUR_LIMITS = {100, 20};

    final String db, user, password, directAddr, proxiedAddr, admin, fpIncident, fpCount;
    final Map<String, TreeSet<String>> sent = new LinkedHashMap<>();
    final Map<String, Map<String, Long>> executions = new LinkedHashMap<>();
    final Map<String, Object> sides = new LinkedHashMap<>();
    String phase = "warm";

    RewriteBattery(String[] args) {
        db = args[0];
        user = args[1];
        password = args[2];
        directAddr = args[3];
        proxiedAddr = args[4];
        admin = args[5];
        fpIncident = args[6];
        fpCount = args[7];
        for (String form : new String[] {"incident", "count"}) {
            sent.put(form, new TreeSet<>());
        }
        for (String p : new String[] {"warm", "measured"}) {
            Map<String, Long> m = new LinkedHashMap<>();
            m.put("incident", 0L);
            m.put("count", 0L);
            executions.put(p, m);
        }
    }

    Connection connect(String addr) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        if (!password.isEmpty()) {
            props.setProperty("password", password);
        }
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        // pgjdbc's default, spelled out: the 5th execution of a PreparedStatement switches it to
        // a named server-side statement.
        props.setProperty("prepareThreshold", "5");
        return DriverManager.getConnection("jdbc:postgresql://" + addr + "/" + db, props);
    }

    /** One side's run: results (compared) and what the server ran. */
    class Side {
        final String name;
        final Connection conn;
        final Connection observer;
        final long pid;
        final Map<String, Object> results = new LinkedHashMap<>();
        final Map<String, Object> serverRan = new LinkedHashMap<>();

        Side(String name, Connection conn, Connection observer) throws SQLException {
            this.name = name;
            this.conn = conn;
            this.observer = observer;
            // Not PGConnection.getBackendPID(): that is the BackendKeyData, which a proxy may
            // stand in for.
            try (Statement st = conn.createStatement();
                    ResultSet rs = st.executeQuery("SELECT pg_backend_pid()")) {
                rs.next();
                pid = rs.getLong(1);
            }
        }

        /** Records one execution's result set (and what the server ran) under `key`. */
        void record(String key, String form, String wireSql, boolean params, ResultSet rs,
                PreparedStatement ps) throws SQLException {
            sent.get(form).add(wireSql);
            if (name.equals("proxied")) {
                executions.get(phase).merge(form, 1L, Long::sum);
            }
            List<Object> rows = rows(rs);
            if (observer == null) {
                return;
            }
            // First what the server ran: the metadata below may send catalog queries.
            Map<String, Object> ran = new LinkedHashMap<>();
            try (PreparedStatement activity = observer.prepareStatement(
                    "SELECT query FROM pg_stat_activity WHERE pid = ?")) {
                activity.setLong(1, pid);
                try (ResultSet q = activity.executeQuery()) {
                    q.next();
                    ran.put("text", q.getString(1));
                }
            }
            ran.put("params", params);
            serverRan.put(key, ran);
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("columns", columns(rs.getMetaData()));
            if (ps != null) {
                r.put("params", params(ps.getParameterMetaData()));
            }
            r.put("rows", rows);
            if (results.put(key, r) != null) {
                throw new IllegalStateException("duplicate result key " + key);
            }
        }

        Map<String, Object> doc() {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("results", results);
            d.put("server_ran", serverRan);
            return d;
        }
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

    /** What pgjdbc reports about each column (isNullable, isAutoIncrement and the base table
     *  come from the table OID and attribute number in RowDescription). */
    static List<Object> columns(ResultSetMetaData md) throws SQLException {
        List<Object> out = new ArrayList<>();
        for (int i = 1; i <= md.getColumnCount(); i++) {
            List<Object> c = new ArrayList<>();
            c.add(md.getColumnName(i));
            c.add(md.getColumnLabel(i));
            c.add(md.getColumnType(i));
            c.add(md.getColumnTypeName(i));
            c.add(md.getColumnClassName(i));
            c.add(md.getPrecision(i));
            c.add(md.getScale(i));
            c.add(md.getColumnDisplaySize(i));
            c.add(md.isNullable(i));
            c.add(md.isAutoIncrement(i));
            c.add(md.getTableName(i));
            c.add(md.unwrap(org.postgresql.PGResultSetMetaData.class).getBaseTableName(i));
            c.add(md.unwrap(org.postgresql.PGResultSetMetaData.class).getBaseColumnName(i));
            out.add(c);
        }
        return out;
    }

    static List<Object> params(ParameterMetaData pmd) throws SQLException {
        List<Object> out = new ArrayList<>();
        for (int i = 1; i <= pmd.getParameterCount(); i++) {
            out.add(List.of(pmd.getParameterType(i), pmd.getParameterTypeName(i)));
        }
        return out;
    }

    static String key(String[] skus, Integer limit) {
        return String.join("+", skus) + (limit == null ? "" : "/" + limit);
    }

    /** The incident and its count for these SKU lists, through one PreparedStatement each. */
    void prepared(Side side, String[][] lists, int[] limits) throws SQLException {
        int n = lists[0].length;
        String listSql = incident(marks(n), "?");
        String listWire = incident(dollars(n), "$" + (n + 1));
        try (PreparedStatement ps = side.conn.prepareStatement(listSql)) {
            for (int c = 0; c < lists.length; c++) {
                for (int i = 0; i < n; i++) {
                    ps.setString(i + 1, lists[c][i]);
                }
                ps.setInt(n + 1, limits[c]);
                try (ResultSet rs = ps.executeQuery()) {
                    side.record("prepared/incident/" + key(lists[c], limits[c]), "incident",
                            listWire, true, rs, ps);
                }
            }
            if (side.observer != null) {
                side.results.put("prepared/incident/" + n + "/server_prepared",
                        ps.unwrap(PGStatement.class).isUseServerPrepare());
            }
        }
        try (PreparedStatement ps = side.conn.prepareStatement(count(marks(n)))) {
            for (int c = 0; c < lists.length; c++) {
                for (int i = 0; i < n; i++) {
                    ps.setString(i + 1, lists[c][i]);
                }
                try (ResultSet rs = ps.executeQuery()) {
                    side.record("prepared/count/" + key(lists[c], null), "count", count(dollars(n)),
                            true, rs, ps);
                }
            }
            if (side.observer != null) {
                side.results.put("prepared/count/" + n + "/server_prepared",
                        ps.unwrap(PGStatement.class).isUseServerPrepare());
            }
        }
    }

    /** The same through a plain Statement with the constants as literals. */
    void literal(Side side, String[] skus, int limit) throws SQLException {
        try (Statement st = side.conn.createStatement()) {
            String sql = incident(literals(skus), String.valueOf(limit));
            try (ResultSet rs = st.executeQuery(sql)) {
                side.record("literal/incident/" + key(skus, limit), "incident", sql, false, rs, null);
            }
            sql = count(literals(skus));
            try (ResultSet rs = st.executeQuery(sql)) {
                side.record("literal/count/" + key(skus, null), "count", sql, false, rs, null);
            }
        }
    }

    void measure(Side side) throws SQLException {
        // 7 executions: unnamed for the first 4, named from the 5th.
        prepared(side, PAIRS, PAIR_LIMITS);
        prepared(side, SINGLES, SINGLE_LIMITS);
        prepared(side, FOURS, FOUR_LIMITS);
        literal(side, new String[] {"A", "B"}, 25);
        literal(side, new String[] {"E", "Z", "C"}, 12);
    }

    // ------------------------------------------------------------- the admin API, no library

    static final HttpClient HTTP = HttpClient.newBuilder()
            .connectTimeout(Duration.ofSeconds(10)).build();
    static final Pattern STATE = Pattern.compile("\"state\":\"([a-z_]+)\"");

    /** The state of the rule's plan for `fp` (null while there is none), and the body. */
    String[] plan(String fp) throws Exception {
        HttpResponse<String> r = HTTP.send(
                HttpRequest.newBuilder(URI.create("http://" + admin + "/api/queries/" + fp))
                        .timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() == 404) {
            return new String[] {null, r.body()};
        }
        if (r.statusCode() != 200) {
            throw new IllegalStateException("GET /api/queries/" + fp + ": " + r.statusCode() + " " + r.body());
        }
        String body = r.body();
        // A plan serializes as {"rule": ..., "fingerprint", "database", "original", "state", ...}.
        int at = body.indexOf("\"rule\":\"" + RULE + "\"");
        if (at < 0) {
            return new String[] {null, body};
        }
        Matcher m = STATE.matcher(body);
        return new String[] {m.find(at) ? m.group(1) : null, body};
    }

    void waitReady() throws Exception {
        long deadline = System.nanoTime() + 20_000_000_000L;
        for (String fp : new String[] {fpIncident, fpCount}) {
            while (true) {
                String[] p = plan(fp);
                if (p[0] != null && !p[0].equals("proving")) {
                    if (!p[0].equals("ready")) {
                        throw new IllegalStateException("the rewrite of " + fp + " was not made: " + p[1]);
                    }
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("no rewrite decision for " + fp + " within 20 s: " + p[1]);
                }
                Thread.sleep(50);
            }
        }
        phase = "measured";
    }

    void run() throws Exception {
        // Each shape once through pgshape: the proof starts, the statement runs as sent.
        try (Connection warm = connect(proxiedAddr)) {
            Side side = new Side("proxied", warm, null);
            prepared(side, new String[][] {PAIRS[0]}, new int[] {PAIR_LIMITS[0]});
        }
        waitReady();
        try (Connection observer = connect(directAddr)) {
            for (String name : new String[] {"direct", "proxied"}) {
                try (Connection conn = connect(name.equals("direct") ? directAddr : proxiedAddr)) {
                    Side side = new Side(name, conn, observer);
                    measure(side);
                    sides.put(name, side.doc());
                }
            }
        }
    }

    public static void main(String[] args) throws Exception {
        RewriteBattery battery = new RewriteBattery(args);
        battery.run();
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("driver", "pgjdbc");
        Map<String, Object> sentDoc = new LinkedHashMap<>();
        battery.sent.forEach((k, v) -> sentDoc.put(k, new ArrayList<>(v)));
        doc.put("sent", sentDoc);
        doc.put("executions", battery.executions);
        doc.putAll(battery.sides);
        StringBuilder b = new StringBuilder();
        json(b, doc);
        System.out.println(b);
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
}
